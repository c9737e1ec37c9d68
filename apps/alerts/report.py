"""The daily quality report: each provider and destination segment over the last 24 h, from the
rollups' hour rows, to the operators (WeCom and e-mail; too long for SMS) and the webhook."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from apps.alerts import readings
from apps.alerts.models import Alert
from apps.alerts.notify import Sent, notify
from apps.alerts.rules import BASELINE, HOUR, floor
from apps.alerts.services import SERVICE
from apps.dispatch.models import Grain


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "—"


def quality_report(*, now: dt.datetime) -> str:
    until = floor(now, HOUR)
    since = until - BASELINE
    rows = readings.provider_outcomes(since=since, until=until, grain=Grain.HOUR)
    lines = [
        f"{SERVICE} Quality report, messages created {timezone.localtime(since):%m-%d %H:%M} to "
        f"{timezone.localtime(until):%m-%d %H:%M %Z}, per provider and destination segment:"
    ]
    for row in rows:
        sent = row.sent + row.receipted
        lines.append(
            f"- {row.provider} · {row.segment}: {sent} sent, delivered {_share(row.delivered, sent)}, "
            f"receipts {_share(row.receipted, sent)}, {row.undelivered} undelivered, {row.failed} failed, {row.expired} expired"
        )
    if not rows:
        lines.append("- no message reached a provider.")
    opened = Alert.objects.filter(opened_at__gte=since, opened_at__lt=until).count()
    still = Alert.objects.filter(state=Alert.State.OPEN).count()
    lines.append(f"Alerts: {opened} opened in these 24 h; {still} open now (admin: Alerts).")
    return "\n".join(lines)


def quality_report_send(*, now: dt.datetime | None = None) -> Sent:
    content = quality_report(now=now or timezone.now())
    return notify(subject=f"{SERVICE} daily quality report", content=content, channels=("wecom", "email"))
