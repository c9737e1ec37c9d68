from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.services import account_create
from messaging_center.errors import ServiceError


class Command(BaseCommand):
    help = "Create an account (a business system) and print its API key as the last line of stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--rate-limit", type=int, help="API requests per second")
        parser.add_argument("--daily-quota", type=int, help="messages per day")

    def handle(self, *args: Any, **options: Any) -> None:
        for option in ("rate_limit", "daily_quota"):
            if options[option] is not None and options[option] <= 0:
                raise CommandError(f"--{option.replace('_', '-')} must be a positive integer.")
        try:
            issued = account_create(name=options["name"], rate_limit=options["rate_limit"], daily_quota=options["daily_quota"])
        except ServiceError as error:
            raise CommandError(error.detail) from None
        account = issued.api_key.account
        self.stdout.write(f"Created account {account.name} ({account.public_id}); its API key is shown only once:")
        self.stdout.write(issued.raw_key)
