"""System checks: an enabled provider whose settings its adapter cannot use is an error at start."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register
from django.db import DatabaseError

from apps.dispatch.models import Provider
from apps.dispatch.providers_config import provider_settings_errors


@register()
def enabled_providers_have_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    try:
        providers = list(Provider.objects.filter(enabled=True))
    except DatabaseError:  # before the first migrate there is nothing to check
        return []
    errors = []
    for provider in providers:
        try:
            problems = provider_settings_errors(provider.kind, provider.settings)
        except Exception as error:  # an undecryptable secret is exactly what this check is for
            problems = [f"settings unreadable ({error})"]
        if problems:
            errors.append(
                Error(
                    f"Provider {provider.name!r} ({provider.kind}) is enabled but its settings are not usable: "
                    f"{', '.join(problems)}.",
                    hint="Fix its settings in admin, or disable it.",
                    obj=provider,
                    id="dispatch.E001",
                )
            )
    return errors
