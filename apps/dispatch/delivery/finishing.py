"""Finishing attempts by conditional UPDATE (sent, failed, expired, retry with backoff).

Every finish is `UPDATE … WHERE status = 'sending' AND attempts = <the claimed attempt>`, so a
message whose lease ran out and was claimed again elsewhere is never finished twice."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.dispatch import outbox, routing, status_hooks, transitions
from apps.dispatch.delivery import holds
from apps.dispatch.delivery.choice import Attempt
from apps.dispatch.events import LOCAL_THROTTLE, NOT_THE_PROVIDERS_FAULT, OUTCOME_UNKNOWN, record_events
from apps.dispatch.models import Status
from apps.dispatch.providers.base import ProviderError, SendResult
from apps.dispatch.providers.errors import ACCEPTED
from messaging_center import ids, metrics
from messaging_center.backoff import backoff_seconds
from messaging_center.db import bound_cursor, json_rows

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
MAX_ATTEMPTS = 10
RETRY_LEASE_GRACE = dt.timedelta(seconds=30)


# Failures that record no provider call: ours (a local rate limit, a held message, an adapter that raised).
NOT_CALLS = (*NOT_THE_PROVIDERS_FAULT, "adapter_error")


def call_reason(attempt: Attempt) -> str:
    """The outcome of the provider call an attempt made (providers.errors.REASONS), '' where it made
    none: no provider, a reconciled one (the earlier call is counted), or a failure of ours."""
    outcome = attempt.outcome
    if attempt.route is None or outcome is None:
        return ""
    if isinstance(outcome, SendResult):
        return "" if outcome.raw.get("reconciled") else ACCEPTED
    return "" if outcome.code in NOT_CALLS else outcome.reason


FAILOVER_FROM = "failover_from:"


def failover_code(attempt: Attempt) -> str:
    """The code of a `sent` event: `failover_from:<provider>` where the message's previous attempt went
    to another provider (it failed there, or its outcome could not be told), else ''. The quality
    metrics count failovers away from a provider by it (apps/dispatch/quality.py)."""
    previous, route = attempt.message.previous_provider, attempt.route
    if attempt.message.attempt > 1 and previous and route is not None and route.name != previous:
        return f"{FAILOVER_FROM}{previous}"[:64]
    return ""


def _count_calls(attempts: Sequence[Attempt], now: dt.datetime) -> None:
    calls = [(attempt, reason) for attempt in attempts if (reason := call_reason(attempt))]
    metrics.count(metrics.PROVIDER_ATTEMPTS, ((a.route.name, reason) for a, reason in calls))  # type: ignore[union-attr]
    for attempt, _ in calls:
        if attempt.message.claimed_at is not None:
            seconds = max((now - attempt.message.claimed_at).total_seconds(), 0.0)
            metrics.PROVIDER_CALL_SECONDS.labels(attempt.route.name).observe(seconds)  # type: ignore[union-attr]


def finish_attempts(attempts: list[Attempt], health: routing.Health) -> None:
    sent: list[Attempt] = []
    failed: list[Attempt] = []
    retry: list[tuple[Attempt, float]] = []
    expired: list[Attempt] = []
    tally: dict[str, list[int]] = {}  # provider → [successes, failures], recorded once per chunk
    now = timezone.now()
    for attempt in attempts:
        outcome, route = attempt.outcome, attempt.route
        if isinstance(outcome, SendResult):
            sent.append(attempt)
            if route:
                tally.setdefault(route.name, [0, 0])[0] += 1
            continue
        assert isinstance(outcome, ProviderError)
        counts_against_provider = (
            route is not None
            and outcome.code not in (LOCAL_THROTTLE, OUTCOME_UNKNOWN)
            and (not outcome.permanent or outcome.provider_fault or outcome.ambiguous)
        )
        if counts_against_provider:
            tally.setdefault(route.name, [0, 0])[1] += 1  # type: ignore[union-attr]
        if outcome.permanent and not outcome.provider_fault:
            failed.append(attempt)
            continue
        if outcome.permanent and outcome.provider_fault and not _has_alternative(attempt):
            failed.append(attempt)
            continue
        # A timeout after the request left us may have been sent: wait for a receipt or the provider's
        # answer to settle it before resending (a receipt moves the message out of retry_wait, so the
        # retry finds nothing to do), as long as its category allows (holds.py).
        if attempt.wait is not None:
            countdown = attempt.wait
        elif outcome.ambiguous:
            countdown = holds.first_wait(attempt.message.category, route.adapter if route else None)
        else:
            countdown = backoff_seconds(attempt.message.attempt, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS, jitter=True)
        if outcome.code == LOCAL_THROTTLE:
            countdown = random.uniform(0.2, 1.0)
        if attempt.message.attempt >= MAX_ATTEMPTS:
            failed.append(attempt)
        elif now + dt.timedelta(seconds=countdown) >= attempt.message.expires_at:
            expired.append(attempt)
        else:
            retry.append((attempt, countdown))
    health.record(tally)
    _count_calls(attempts, now)
    _mark_sent(sent)
    _mark_final(failed, "failed")
    _mark_final(expired, "expired")
    _mark_retry(retry)


def _has_alternative(attempt: Attempt) -> bool:
    routes = routing.ROUTES.for_channel(attempt.message.channel)
    current = attempt.route.name if attempt.route else ""
    return any(r.name != current and r.serves(attempt.message.address) for r in routes)


def attempt_rows(attempts: Sequence[Attempt], **columns: Sequence[Any]) -> dict[str, Any]:
    """Parameters of a statement about these attempts: `ids` (for the primary key index) and `rows` (each
    attempt's id, attempt, provider and the given columns) as one JSON text (docs/performance.md, Delivery)."""
    rows: list[dict[str, Any]] = [
        {"id": a.message.id, "attempt": a.message.attempt, "provider": a.route.name if a.route else ""} for a in attempts
    ]
    for name, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    return {"ids": [a.message.id for a in attempts], "rows": json_rows(rows)}


def update_ids(sql: str, params: dict[str, Any]) -> list[uuid.UUID]:
    with bound_cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _mark_sent(attempts: list[Attempt]) -> None:
    if not attempts:
        return

    params = attempt_rows(
        attempts,
        pid=[a.outcome.provider_message_id for a in attempts],  # type: ignore[union-attr]
        code=[failover_code(a) for a in attempts],
        detail=[_sent_detail(a) for a in attempts],
        event_id=[str(event_id) for event_id in ids.uuid7_many(len(attempts))],
        started=[a.message.claimed_at for a in attempts],
        reason=[call_reason(a) for a in attempts],
        price=[_price(a) for a in attempts],
    )
    # The finish (and its cost), its `sent` events and the status callbacks owed in one statement. Receipts that
    # arrived before the finish are looked for after its commit: one that lands while this
    # statement runs would be invisible to it (and its own match found the message still sending).
    with bound_cursor() as cursor:
        cursor.execute(transitions.SENT, params)
        found = cursor.fetchall()
    waited = {row[1]: float(row[3]) for row in found if row[0] == "s"}
    done = set(waited)
    metrics.count(
        metrics.MESSAGES_SENT, ((a.message.channel, a.route.name) for a in attempts if a.message.id in done and a.route)
    )
    for attempt in attempts:
        if attempt.message.id in waited:
            metrics.ACCEPT_TO_SENT.labels(attempt.message.priority).observe(max(waited[attempt.message.id], 0.0))

    status_hooks.messages_sent(sorted(done), [(row[1], row[2], "") for row in found if row[0] == "c"])


def _price(attempt: Attempt) -> int:
    """The provider's price per SMS segment to the message's segment; 0 where none is set."""
    if attempt.route is None:
        return 0
    return routing.ROUTES.price(attempt.route.name, attempt.message.segment) or 0


def _sent_detail(attempt: Attempt) -> str:
    assert attempt.route is not None and isinstance(attempt.outcome, SendResult)
    if attempt.outcome.raw.get("reconciled"):
        return f"{attempt.route.name} already had it (the earlier attempt's outcome was unknown); not sent again"
    return f"accepted by {attempt.route.name}{attempt.note}"


def _mark_final(attempts: list[Attempt], status: str) -> None:
    if not attempts:
        return

    params = attempt_rows(
        attempts,
        code=[a.outcome.code for a in attempts],  # type: ignore[union-attr]
        detail=[_detail(a, status) for a in attempts],
    )
    done = set(update_ids(transitions.FINAL, params | {"status": status}))
    record_events(
        [
            (a.message.id, status, a.outcome.code, _detail(a, status), a.route.name if a.route else "", a.message.attempt)  # type: ignore[union-attr]
            for a in attempts
            if a.message.id in done
        ],
        started={a.message.id: a.message.claimed_at for a in attempts},
        reasons={a.message.id: call_reason(a) for a in attempts},
    )
    if status == "failed":
        metrics.count(
            metrics.MESSAGES_FAILED,
            ((a.message.channel, a.route.name if a.route else "") for a in attempts if a.message.id in done),
        )

    status_hooks.messages_reached(done, status)


def _detail(attempt: Attempt, status: str) -> str:
    error = attempt.outcome
    assert isinstance(error, ProviderError)
    where = f"{attempt.route.name}: " if attempt.route else ""
    if status == "expired":
        return f"The TTL would pass before another try ({where}{error.code}: {error.detail})."
    if attempt.message.attempt >= MAX_ATTEMPTS and not error.permanent:
        return f"Gave up after {attempt.message.attempt} attempts ({where}{error.code}: {error.detail})."
    return (f"{where}{error.detail}" if error.detail else f"{where}{error.code}") + attempt.note


def _mark_retry(retries: list[tuple[Attempt, float]]) -> None:
    if not retries:
        return

    attempts = [a for a, _ in retries]
    params = attempt_rows(
        attempts,
        code=[a.outcome.code for a in attempts],  # type: ignore[union-attr]
        detail=[_detail(a, "retry_wait") for a in attempts],
        lease_seconds=[countdown + RETRY_LEASE_GRACE.total_seconds() for _, countdown in retries],
        ambiguous=[bool(a.outcome.ambiguous) for a in attempts],  # type: ignore[union-attr]
    )
    done = set(update_ids(transitions.RETRY, params))
    record_events(
        [
            (
                a.message.id,
                Status.RETRY_WAIT,
                a.outcome.code,  # type: ignore[union-attr]
                f"{_detail(a, 'retry_wait')}; retrying in {countdown:.1f} s",
                a.route.name if a.route else "",
                a.message.attempt,
            )
            for a, countdown in retries
            if a.message.id in done
        ],
        started={a.message.id: a.message.claimed_at for a in attempts},
        reasons={a.message.id: call_reason(a) for a in attempts},
    )
    groups: dict[tuple[str, int], list[uuid.UUID]] = {}
    for attempt, countdown in retries:
        if attempt.message.id in done:
            groups.setdefault((attempt.message.priority, round(countdown)), []).append(attempt.message.id)
    for (lane, countdown), message_ids in groups.items():
        # A wait beyond a countdown's cap (a hold for a receipt) is the database's: the sweeper enqueues
        # the messages once their lease runs out.
        if countdown <= settings.MAX_RETRY_COUNTDOWN_SECONDS:
            outbox.publish_retry(lane=lane, message_ids=message_ids, countdown=max(0.1, float(countdown)))
