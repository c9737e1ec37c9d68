from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Create a Django admin (operator) login unless it exists; the password comes from MC_OPERATOR_PASSWORD."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="operator")

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("MC_OPERATOR_PASSWORD", "")
        if len(password) < 12:
            raise CommandError("Set MC_OPERATOR_PASSWORD to a password of at least 12 characters.")
        user_model = get_user_model()
        if user_model.objects.filter(username=options["username"]).exists():
            self.stdout.write(f"operator {options['username']} exists")
            return
        user_model.objects.create_superuser(username=options["username"], email="", password=password)
        self.stdout.write(f"operator {options['username']} created")
