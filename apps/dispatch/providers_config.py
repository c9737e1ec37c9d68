"""Provider rows: saving validated, encrypted settings."""

from __future__ import annotations

from collections.abc import Mapping

from apps.dispatch.models import Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from messaging_center.errors import ValidationFailed


def provider_settings_errors(kind: str, settings: Mapping[str, str]) -> list[str]:
    if kind not in ADAPTERS:
        return [f"unknown kind {kind!r}; known: {', '.join(sorted(ADAPTERS))}"]
    return adapter_class(kind).validate_settings(settings)


def provider_save(*, provider: Provider, settings: Mapping[str, str]) -> Provider:
    problems = provider_settings_errors(provider.kind, settings)
    if problems:
        raise ValidationFailed(f"Provider settings are not usable: {', '.join(problems)}.", errors={"settings": problems})
    provider.settings = dict(settings)
    provider.save()
    return provider
