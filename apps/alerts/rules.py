"""Each rule kind: what it reads (readings.py) and, per subject, whether it fires.

A finding is `firing` True (the condition holds), False (it does not: an open alert resolves) or None
(too little traffic to tell, or a rate between the line and half a threshold above it: an open alert
stays open, none opens). Rates are judged only over at least `min_volume` messages, calls or codes.
Delivery rate here is delivered / messages with a receipt (the ones still awaiting theirs are receipt
silence's business), so a provider's fresh minutes do not look like a drop while their receipts are
on the way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.utils import timezone

from apps.alerts import readings
from apps.alerts.models import AlertRule, Kind
from apps.dispatch.models import Grain

MINUTE, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)
BASELINE = dt.timedelta(hours=24)
# Expected when a provider (or account) has too little 24 h history to be its own baseline.
FALLBACK_DELIVERY_RATE = 0.9
FALLBACK_FILL_RATE = 0.6
# Codes of the last minutes are left out of the fill rate: nobody has typed them in yet.
FILL_GRACE = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class Finding:
    subject: str
    firing: bool | None
    value: float | None
    summary: str  # what was measured
    action: str = ""  # what the service does about it by itself, and what an operator can do


@dataclass(frozen=True)
class Evaluation:
    findings: list[Finding]
    absent_clears: bool  # an open alert whose subject has no finding resolves (its subject is gone)


def floor(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    return moment - (moment - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) % width


def _in_scope(rule: AlertRule, name: str) -> bool:
    return not rule.scope or rule.scope == name


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _judged(rule: AlertRule, rate: float, volume: int, limit: float) -> bool | None:
    """Fires below `limit`; clears only half a threshold above it, so that a rate hovering at the
    line neither flaps nor resolves an alert it has not really left."""
    if volume < rule.min_volume:
        return None
    if rate < limit:
        return True
    return False if rate >= limit + rule.threshold / 2 else None


def _delivery_rate_drop(rule: AlertRule, now: dt.datetime) -> Evaluation:
    recent = readings.provider_outcomes(since=floor(now - rule.window_minutes * MINUTE, MINUTE), until=now)
    hour = floor(now, HOUR)
    base = readings.provider_outcomes(since=hour - BASELINE, until=hour, grain=Grain.HOUR)
    action = (
        "Messages still go out through it; check its console and receipts, "
        "and disable it in admin (Providers) if it does not recover."
    )

    def totals(rows: Iterable[readings.Outcomes]) -> dict[str, tuple[int, int]]:
        by_provider: dict[str, tuple[int, int]] = {}
        for row in rows:
            delivered, receipted = by_provider.get(row.provider, (0, 0))
            by_provider[row.provider] = (delivered + row.delivered, receipted + row.receipted)
        return by_provider

    def finding(subject: str, delivered: int, receipted: int, baseline: tuple[int, int] | None) -> Finding:
        if baseline and baseline[1] >= rule.min_volume:
            expected, against = _rate(*baseline), f"its 24 h baseline {_rate(*baseline):.0%}"
        else:
            expected, against = FALLBACK_DELIVERY_RATE, f"no 24 h baseline, expected {FALLBACK_DELIVERY_RATE:.0%}"
        rate = _rate(delivered, receipted)
        summary = f"delivery rate {rate:.0%} of {receipted} receipted messages of the last {rule.window_minutes} min ({against})"
        return Finding(subject, _judged(rule, rate, receipted, expected - rule.threshold), rate, summary, action)

    findings = []
    base_by_provider = totals(base)
    base_by_segment = {(r.provider, r.segment): (r.delivered, r.receipted) for r in base}
    for provider, (delivered, receipted) in totals(recent).items():
        if not _in_scope(rule, provider):
            continue
        whole = finding(provider, delivered, receipted, base_by_provider.get(provider))
        findings.append(whole)
        segments = [r for r in recent if r.provider == provider]
        if len(segments) < 2:
            continue  # the provider's one segment is the provider
        for row in segments:
            part = finding(
                f"{provider} · {row.segment}", row.delivered, row.receipted, base_by_segment.get((provider, row.segment))
            )
            # The provider's own alert covers its segments while it fires.
            findings.append(Finding(part.subject, None, part.value, part.summary, action) if whole.firing else part)
    return Evaluation(findings, absent_clears=False)


def _submit_errors(rule: AlertRule, now: dt.datetime) -> Evaluation:
    findings = []
    for reading in readings.submit_health():
        if not _in_scope(rule, reading.provider):
            continue
        share = _rate(reading.failures, reading.calls)
        summary = f"{reading.failures} of {reading.calls} calls failed in the last minute; circuit {reading.circuit}"
        if reading.circuit != "closed":
            firing: bool | None = True
        elif reading.failures == 0:
            firing = False
        else:
            firing = None if reading.calls < rule.min_volume else share >= rule.threshold
        action = "Failed calls fail over to the other providers; an open circuit keeps traffic off it, one probe at a time."
        findings.append(Finding(reading.provider, firing, share, summary, action))
    return Evaluation(findings, absent_clears=True)


def _provider_demoted(rule: AlertRule, now: dt.datetime) -> Evaluation:
    """Routing's own verdict (every 15 s, the newest minutes with enough receipts): the quickest word
    that a provider stopped delivering to a segment, whichever of its figures fell."""
    findings = [
        Finding(
            f"{d.provider} · {d.segment}",
            d.demoted,
            None,
            f"{d.reason or 'delivering'} ({d.messages} messages judged)",
            "Routing sends the segment through the other providers, a probe share through it, "
            "until its receipts recover; pin or exclude providers per segment in admin.",
        )
        for d in readings.demotions()
        if _in_scope(rule, d.provider)
    ]
    return Evaluation(findings, absent_clears=True)


def _receipt_silence(rule: AlertRule, now: dt.datetime) -> Evaluation:
    wait = rule.window_minutes * MINUTE
    rows = readings.provider_outcomes(since=floor(now - 2 * wait, MINUTE), until=floor(now - wait, MINUTE))
    findings = []
    for provider in sorted(readings.providers_reporting_delivery()):
        if not _in_scope(rule, provider):
            continue
        awaiting = sum(r.sent for r in rows if r.provider == provider)
        receipted = sum(r.receipted for r in rows if r.provider == provider)
        total = awaiting + receipted
        share = _rate(receipted, total)
        summary = (
            f"{receipted} receipts for {total} messages sent {rule.window_minutes} to {2 * rule.window_minutes} min ago "
            f"({awaiting} still awaiting one)"
        )
        action = "Pull-only providers are polled every 30 s; ask the provider whether its status reports are held back."
        findings.append(Finding(provider, _judged(rule, share, total, rule.threshold), share, summary, action))
    return Evaluation(findings, absent_clears=False)


def _queue_age(rule: AlertRule, now: dt.datetime) -> Evaluation:
    findings = []
    for lane in readings.lanes():
        if not _in_scope(rule, lane.lane):
            continue
        age = (now - lane.oldest_queued).total_seconds() if lane.oldest_queued else 0.0
        tasks = "unknown" if lane.tasks is None else str(lane.tasks)
        summary = f"the oldest queued message has waited {age:.0f} s; {tasks} tasks in mc.{lane.lane}"
        action = "Workers take the lanes highest first; look at the workers of this lane (Flower) or add some."
        findings.append(Finding(lane.lane, age >= rule.threshold, age, summary, action))
    return Evaluation(findings, absent_clears=True)


def _callback_backlog(rule: AlertRule, now: dt.datetime) -> Evaluation:
    backlog = readings.callback_backlog(due_before=now - rule.window_minutes * MINUTE)
    oldest = f", the oldest due since {timezone.localtime(backlog.oldest_due):%H:%M:%S}" if backlog.oldest_due else ""
    summary = f"{backlog.due} status callbacks due for over {rule.window_minutes} min{oldest}"
    action = "Callbacks are retried with backoff for 24 h; look at the receipts worker (mc.receipts)."
    return Evaluation([Finding("", backlog.due >= rule.threshold, float(backlog.due), summary, action)], absent_clears=True)


def _verification_fill_drop(rule: AlertRule, now: dt.datetime) -> Evaluation:
    until = floor(now - FILL_GRACE, MINUTE)
    recent = readings.verification_codes(since=until - rule.window_minutes * MINUTE, until=until)
    hour = floor(now, HOUR)
    base = readings.verification_codes(since=hour - BASELINE, until=hour, grain=Grain.HOUR)
    findings = []
    for account_id, codes in recent.items():
        if not _in_scope(rule, codes.account):
            continue
        history = base.get(account_id)
        if history and history.codes >= rule.min_volume:
            expected, against = _rate(history.filled, history.codes), f"its 24 h: {_rate(history.filled, history.codes):.0%}"
        else:
            expected, against = FALLBACK_FILL_RATE, f"no 24 h baseline, expected {FALLBACK_FILL_RATE:.0%}"
        fill = _rate(codes.filled, codes.codes)
        summary = (
            f"{codes.filled} of {codes.codes} codes of the last {rule.window_minutes} min checked valid ({fill:.0%}; {against})"
        )
        action = (
            "Codes nobody types in: SMS pumping (look at the numbers' countries) or codes that do not arrive "
            "(compare the delivery rate of its providers); the platform caps limit codes per number (admin)."
        )
        # Few codes: the flood (or the day) is over, so an open alert resolves.
        firing = _judged(rule, fill, codes.codes, expected - rule.threshold) if codes.codes >= rule.min_volume else False
        findings.append(Finding(codes.account, firing, fill, summary, action))
    return Evaluation(findings, absent_clears=True)


def _quota_near(rule: AlertRule, now: dt.datetime) -> Evaluation:
    findings = []
    for use in readings.quota_use(now=now):
        if not _in_scope(rule, use.account):
            continue
        share = _rate(use.used, use.quota)
        summary = f"{use.used} of its {use.quota} messages today ({share:.0%})"
        action = "At 100 % its sends are refused (429 quota_exceeded); raise its daily quota in admin (Accounts) if expected."
        findings.append(Finding(use.account, share >= rule.threshold, share, summary, action))
    return Evaluation(findings, absent_clears=True)


EVALUATORS: dict[str, Callable[[AlertRule, dt.datetime], Evaluation]] = {
    Kind.DELIVERY_RATE_DROP: _delivery_rate_drop,
    Kind.SUBMIT_ERRORS: _submit_errors,
    Kind.RECEIPT_SILENCE: _receipt_silence,
    Kind.QUEUE_AGE: _queue_age,
    Kind.CALLBACK_BACKLOG: _callback_backlog,
    Kind.VERIFICATION_FILL_DROP: _verification_fill_drop,
    Kind.QUOTA_NEAR: _quota_near,
    Kind.PROVIDER_DEMOTED: _provider_demoted,
}


def rule_evaluate(rule: AlertRule, now: dt.datetime) -> Evaluation:
    return EVALUATORS[rule.kind](rule, now)
