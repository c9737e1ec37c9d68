"""Gives the default run's simulator providers whose pushes are unsigned (Aliyun, Tencent, Volcengine)
one shared secret receipt token and prints it; the launcher builds the simulator's push URL from it
(`<PUBLIC_BASE_URL>/api/v1/receipts/t/<token>/<provider>`)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dispatch.models import Provider
from apps.dispatch.providers import adapter_class
from apps.dispatch.providers_config import provider_save
from apps.receipts.intake import TOKEN_SETTING
from devstack.providers import simulator_providers


class Command(BaseCommand):
    help = "Sets a shared receipt token on the simulator's unsigned providers; prints it."

    def handle(self, *args: Any, **options: Any) -> None:
        names = [
            name
            for name, spec in simulator_providers(settings.SIMULATOR_URL).items()
            if not adapter_class(str(spec["kind"])).signed_receipts
        ]
        providers = list(Provider.objects.filter(name__in=names))
        token = next((p.settings[TOKEN_SETTING] for p in providers if p.settings.get(TOKEN_SETTING)), None)
        token = token or secrets.token_urlsafe(24)
        for provider in providers:
            if provider.settings.get(TOKEN_SETTING) != token:
                provider_save(provider=provider, settings={**provider.settings, TOKEN_SETTING: token})
        self.stdout.write(token)
