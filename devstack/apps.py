from __future__ import annotations

from django.apps import AppConfig


class DevstackConfig(AppConfig):
    """Only for its management commands (configure_simulator_providers, configure_simulator_receipts)."""

    name = "devstack"
    verbose_name = "Development stack"
