from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from devstack.providers import simulator_providers_configure


class Command(BaseCommand):
    help = "Create or update the `sim-*` providers so that every channel of the default run delivers to the simulator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=None, help="the simulator's base URL (default: SIMULATOR_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        names = simulator_providers_configure(base_url=options["url"] or settings.SIMULATOR_URL)
        self.stdout.write(f"simulator providers: {', '.join(names)}")
