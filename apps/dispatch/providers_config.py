"""Provider rows: saving validated, encrypted settings; the default run's simulator providers."""

from __future__ import annotations

from collections.abc import Mapping

from apps.dispatch.models import Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from apps.dispatch.simulator.state import DEFAULT_CREDENTIALS
from messaging_center.errors import ValidationFailed

# The simulator's providers for a fresh checkout: SMS split between the three APIs; only Twilio
# (free text) can send templates without provider template ids, so it is also the safety net.
SIMULATOR_PROVIDERS: dict[str, dict[str, object]] = {
    "sim-aliyun": {"kind": "aliyun", "channel": "sms", "settings": {**DEFAULT_CREDENTIALS["aliyun"], "sign_name": "MC"}},
    "sim-tencent": {
        "kind": "tencent",
        "channel": "sms",
        "settings": {**DEFAULT_CREDENTIALS["tencent"], "sdk_app_id": "1400000001", "sign_name": "MC"},
    },
    "sim-twilio": {
        "kind": "twilio",
        "channel": "sms",
        "settings": {**DEFAULT_CREDENTIALS["twilio"], "from_number": "+15005550006"},
    },
}


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


def simulator_providers_configure(*, base_url: str) -> list[str]:
    """Creates the `sim-*` providers, or points existing ones at `base_url` (ports change between runs)."""
    for name, spec in SIMULATOR_PROVIDERS.items():
        provider = Provider.objects.filter(name=name).first() or Provider(
            name=name, kind=str(spec["kind"]), channel=str(spec["channel"]), weight=100, priority_group=1
        )
        settings = {**provider.settings, **spec["settings"], "endpoint": base_url}  # type: ignore[dict-item]
        provider_save(provider=provider, settings=settings)
    return list(SIMULATOR_PROVIDERS)
