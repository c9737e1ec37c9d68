"""The alert cycle, run by beat every 30 s: every enabled rule evaluated, an alert opened, reminded
or resolved per subject, and the notices sent.

- Dedup: one open alert per rule and subject (a partial unique index); a rule that keeps firing
  updates it.
- Cool-down: two notices about one rule and subject are at least `cooldown_minutes` apart. An alert
  that opens sooner after the last one (flapping) waits, still open, for the cool-down to pass; if it
  clears before then, it resolves without a word, since nothing was announced.
- Reminders every `repeat_minutes` while it stays open; a resolve notice when it clears, for every
  alert whose opening was announced."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db.models import Max
from django.utils import timezone

from apps.alerts.models import Alert, AlertNotice, AlertRule
from apps.alerts.notify import notify
from apps.alerts.rules import Finding, rule_evaluate

logger = logging.getLogger(__name__)

MINUTE = dt.timedelta(minutes=1)
SERVICE = "[Messaging Center]"  # every notice starts with it (a DingTalk robot's keyword, say)


@dataclass
class Cycle:
    opened: int = 0
    resolved: int = 0
    notices: int = 0


def _subject(alert: Alert) -> str:
    return f"{alert.rule.name}" + (f" · {alert.subject}" if alert.subject else "")


def _when(moment: dt.datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}"


def _content(alert: Alert, kind: str, finding: Finding | None, now: dt.datetime) -> str:
    title = _subject(alert)
    if kind == AlertNotice.Kind.RESOLVED:
        lasted = int((now - alert.opened_at).total_seconds() // 60)
        now_reads = f" Now: {finding.summary}." if finding else ""
        opened = _when(alert.opened_at)
        return f"{SERVICE} RESOLVED {title}: clear since {_when(now)}, after {lasted} min (open since {opened}).{now_reads}"
    assert finding is not None
    label = "ALERT" if kind == AlertNotice.Kind.OPENED else "STILL OPEN"
    done = f" Done: {finding.action}" if finding.action else ""
    return f"{SERVICE} {label} {title}: {finding.summary}; since {_when(alert.opened_at)}.{done}"


def _send(alert: Alert, kind: str, finding: Finding | None, now: dt.datetime) -> None:
    content = _content(alert, kind, finding, now)
    sent = notify(subject=f"{SERVICE} {kind}: {_subject(alert)}", content=content)
    AlertNotice.objects.create(
        alert=alert, kind=kind, at=now, content=content, webhook=sent.webhook[:200], operator_messages=sent.operators
    )
    alert.notified_at = now
    logger.info("alert %s %s: webhook %s; operators %s", kind, _subject(alert), sent.webhook, sent.operators)


def _cooled_down(rule: AlertRule, subject: str, now: dt.datetime) -> bool:
    last = Alert.objects.filter(rule=rule, subject=subject).aggregate(last=Max("notified_at"))["last"]
    return last is None or now - last >= rule.cooldown_minutes * MINUTE


def _firing(rule: AlertRule, alert: Alert | None, finding: Finding, now: dt.datetime, cycle: Cycle) -> None:
    if alert is None:
        alert = Alert(rule=rule, subject=finding.subject, opened_at=now)
        cycle.opened += 1
    alert.last_seen_at, alert.value, alert.summary = now, finding.value, finding.summary
    if not alert.announced:
        if _cooled_down(rule, finding.subject, now):
            alert.save()  # the notice refers to it
            _send(alert, AlertNotice.Kind.OPENED, finding, now)
            alert.announced = True
            cycle.notices += 1
    elif rule.repeat_minutes and alert.notified_at and now - alert.notified_at >= rule.repeat_minutes * MINUTE:
        _send(alert, AlertNotice.Kind.REMINDER, finding, now)
        cycle.notices += 1
    alert.save()


def _clear(alert: Alert, finding: Finding | None, now: dt.datetime, cycle: Cycle) -> None:
    alert.state, alert.resolved_at = Alert.State.RESOLVED, now
    if alert.announced:
        _send(alert, AlertNotice.Kind.RESOLVED, finding, now)
        cycle.notices += 1
    alert.save()
    cycle.resolved += 1


def alerts_evaluate(*, now: dt.datetime | None = None) -> Cycle:
    now = now or timezone.now()
    cycle = Cycle()
    for rule in AlertRule.objects.filter(enabled=True):
        try:
            evaluation = rule_evaluate(rule, now)
        except Exception:  # one rule's broken read must not silence the others
            logger.exception("alert rule %s could not be evaluated", rule.name)
            continue
        open_alerts = {a.subject: a for a in Alert.objects.filter(rule=rule, state=Alert.State.OPEN).select_related("rule")}
        for finding in evaluation.findings:
            alert = open_alerts.pop(finding.subject, None)
            if finding.firing:
                _firing(rule, alert, finding, now, cycle)
            elif finding.firing is False and alert is not None:
                _clear(alert, finding, now, cycle)
        if evaluation.absent_clears:
            for alert in open_alerts.values():
                _clear(alert, None, now, cycle)
    return cycle


def alert_resolve_by_operator(*, alert: Alert, now: dt.datetime | None = None) -> None:
    """An operator closes an alert whose subject no longer reports (a provider taken out of service):
    the resolve notice says so."""
    if alert.state == Alert.State.OPEN:
        _clear(alert, None, now or timezone.now(), Cycle())
