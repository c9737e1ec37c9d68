"""The default run's `sim-*` providers: one or more per channel, pointed at the provider simulator."""

from __future__ import annotations

from urllib.parse import urlsplit

from apps.dispatch.models import Provider
from apps.dispatch.providers_config import provider_save
from devstack.simulator.fcm import service_account_json
from devstack.simulator.state import DEFAULT_CREDENTIALS


def simulator_providers(
    base_url: str, *, apns_port: int | None = None, smtp_port: int | None = None
) -> dict[str, dict[str, object]]:
    """The simulator's providers for a fresh checkout, one or more per channel. SMS as a deployment
    in mainland China routes it: mainland numbers (+86) split between the domestic APIs, Aliyun,
    Tencent and Volcengine (registered signature and templates, batch calls; each takes a template
    that has an id for it); every other number, and a template without ids for them, through Twilio
    (free text), which is also the failover when the domestic providers are down (priority group 2).
    APNs (HTTP/2) and SMTP listen on the simulator's port + 1 and + 2."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    apns_port = apns_port or port + 1
    smtp_port = smtp_port or port + 2
    return {
        "sim-aliyun": {
            "kind": "aliyun",
            "channel": "sms",
            "destinations": "+86",
            "settings": {**DEFAULT_CREDENTIALS["aliyun"], "sign_name": "MC"},
        },
        "sim-tencent": {
            "kind": "tencent",
            "channel": "sms",
            "destinations": "+86",
            "settings": {**DEFAULT_CREDENTIALS["tencent"], "sdk_app_id": "1400000001", "sign_name": "MC"},
        },
        "sim-volcengine": {
            "kind": "volcengine",
            "channel": "sms",
            "destinations": "+86",
            "settings": {**DEFAULT_CREDENTIALS["volcengine"], "sms_account": "7a2b0c1d", "sign_name": "MC"},
        },
        "sim-twilio": {
            "kind": "twilio",
            "channel": "sms",
            "priority_group": 2,
            "settings": {**DEFAULT_CREDENTIALS["twilio"], "from_number": "+15005550006"},
        },
        "sim-wechat": {"kind": "wechat", "channel": "wechat", "settings": dict(DEFAULT_CREDENTIALS["wechat"])},
        "sim-wecom": {"kind": "wecom", "channel": "wecom", "settings": {**DEFAULT_CREDENTIALS["wecom"], "agentid": "1000002"}},
        "sim-fcm": {
            "kind": "fcm",
            "channel": "push",
            "settings": {
                "project_id": DEFAULT_CREDENTIALS["fcm"]["project_id"],
                "service_account_json": service_account_json(base_url, DEFAULT_CREDENTIALS["fcm"]),
            },
        },
        "sim-apns": {
            "kind": "apns",
            "channel": "push",
            "settings": {
                **DEFAULT_CREDENTIALS["apns"],
                "topic": "com.example.app",
                "endpoint": f"{parts.scheme}://{host}:{apns_port}",
            },
        },
        "sim-jpush": {"kind": "jpush", "channel": "push", "settings": dict(DEFAULT_CREDENTIALS["jpush"])},
        "sim-smtp": {
            "kind": "smtp",
            "channel": "email",
            "settings": {
                **DEFAULT_CREDENTIALS["smtp"],
                "host": host,
                "port": str(smtp_port),
                "from_email": "Messaging Center <noreply@example.com>",
                "use_tls": "false",
            },
        },
    }


def simulator_providers_configure(*, base_url: str, apns_port: int | None = None, smtp_port: int | None = None) -> list[str]:
    """Creates the `sim-*` providers, or points existing ones at `base_url` (ports change between runs;
    their routing, perhaps changed in admin since, stays as it is)."""
    specs = simulator_providers(base_url, apns_port=apns_port, smtp_port=smtp_port)
    for name, spec in specs.items():
        provider = Provider.objects.filter(name=name).first() or Provider(
            name=name,
            kind=str(spec["kind"]),
            channel=str(spec["channel"]),
            weight=100,
            priority_group=int(spec.get("priority_group", 1)),  # type: ignore[call-overload]
            destinations=str(spec.get("destinations", "")),
        )
        settings = {**provider.settings, "endpoint": base_url, **spec["settings"]}  # type: ignore[dict-item]
        if spec["kind"] == "smtp":
            settings.pop("endpoint", None)
        provider_save(provider=provider, settings=settings)
    return list(specs)
