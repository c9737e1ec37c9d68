"""The group write: concurrent small requests of one web process written in one transaction.

One statement claims their Idempotency-Keys, one pipelined Redis call decides their limits, one COPY
or insert writes their messages, one finish statement, one commit, one publish; their queued
messages share tasks. Each request keeps its own outcome: its quota decision, replay or error."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import DatabaseError, connection, transaction
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.accounts.models import Account
from apps.accounts.selectors import PreferencesQuery, quota_key
from apps.dispatch import outbox
from apps.dispatch.accept.entries import Entry, schedule_entries, seal_entries, seconds_to_midnight
from apps.dispatch.accept.idempotency import SendResponse, claim_idempotency_key
from apps.dispatch.accept.prepare import PreparedSend, apply_opt_outs, send_preferences_query
from apps.dispatch.accept.rows import INLINE_MAX_MESSAGES, MESSAGE_COLUMNS, copy_lines, inline_rows, response_body, write_finish
from apps.dispatch.models import Status
from apps.dispatch.policy import limits, throttling
from apps.dispatch.policy.platform_caps import platform_cap_detail, platform_limits
from apps.dispatch.policy.throttling import limiter
from messaging_center import ids, metrics
from messaging_center.db import bound_cursor
from messaging_center.errors import ServiceError, Unavailable
from messaging_center.group_commit import GroupCommit

logger = logging.getLogger(__name__)


class QuotaExceeded(ServiceError):
    status_code = 429
    code = "quota_exceeded"


class RateLimited(ServiceError):
    status_code = 429
    code = "rate_limited"


def rate_limited(seconds: int) -> RateLimited:
    return RateLimited(
        f"Request was throttled: over the account's request rate. Retry in {seconds} s.", headers={"Retry-After": str(seconds)}
    )


# --- group write ----------------------------------------------------------------------------------
#
# Concurrent small requests in one web process are written together (messaging_center/group_commit):
# one transaction, one statement claiming their Idempotency-Keys, one pipelined Redis call for their
# limits, one COPY, one finish statement, one commit, one publish — and their queued messages share
# tasks. Each request still gets its own outcome: its own quota decision, replay or error.

GROUP_MAX_ENTRIES = 100  # larger requests are written on their own: they fill a transaction alone
AGAIN = object()  # the key was claimed earlier in the same group with another body: submit again

SendResult = SendResponse | Exception


def _claim_keys(sends: list[PreparedSend], results: list[SendResult | None]) -> None:
    """Claims every send's Idempotency-Key (in key order, so that two groups claiming the same keys
    cannot deadlock) and looks up the opt-outs of every send not yet checked, in one statement; a key
    already present is resolved per send (replay, conflict, or an expired record replaced)."""
    keyed = sorted(
        (i for i, s in enumerate(sends) if s.idempotency_key), key=lambda i: (str(sends[i].account.id), sends[i].idempotency_key)
    )
    for i in keyed:
        sends[i].record_id = ids.uuid7()
    branches: list[str] = []
    params: dict[str, object] = {}
    if keyed:
        branches.append("SELECT -1, id::text, NULL::varchar[] FROM claimed")
        params |= {
            "record_ids": [sends[i].record_id for i in keyed],
            "accounts": [sends[i].account.id for i in keyed],
            "keys": [sends[i].idempotency_key for i in keyed],
            "hashes": [sends[i].fingerprint for i in keyed],
            "created": [sends[i].now for i in keyed],
        }
    lookups: dict[int, PreferencesQuery] = {}
    for i, send in enumerate(sends):
        query = None if send.preferences_checked else send_preferences_query(send, suffix=f"_{i}")
        if query is None:
            send.preferences_checked = True
        else:
            lookups[i] = query
            branches.append(f"SELECT {i}, * FROM ({query.sql}) AS p{i}")  # noqa: S608 - our own query text
            params |= query.params
    if not branches:
        return
    claim = (
        "WITH claimed AS (INSERT INTO dispatch_idempotencyrecord (id, account_id, key, body_hash, created_at) "
        "SELECT * FROM unnest(%(record_ids)s::uuid[], %(accounts)s::uuid[], %(keys)s::text[], %(hashes)s::text[], "
        "%(created)s::timestamptz[]) ON CONFLICT (account_id, key) DO NOTHING RETURNING id) "
        if keyed
        else ""
    )
    with bound_cursor() as cursor:
        cursor.execute(claim + " UNION ALL ".join(branches), params)
        rows = cursor.fetchall()
    claimed = {uuid.UUID(value) for where, value, _ in rows if where == -1}
    for i, query in lookups.items():
        apply_opt_outs(sends[i], query.opted_out((user_id, matched) for where, user_id, matched in rows if where == i))
        sends[i].preferences_checked = True
    for i in keyed:
        send = sends[i]
        if send.record_id in claimed:
            continue
        try:
            outcome = claim_idempotency_key(
                account=send.account, key=send.idempotency_key or "", fingerprint=send.fingerprint, now=send.now
            )
        except ServiceError as error:
            send.record_id, results[i] = None, error
            continue
        if isinstance(outcome, SendResponse):
            send.record_id, results[i] = None, outcome
        else:
            send.record_id = outcome


def apply_limits(sends: list[PreparedSend], results: list[SendResult | None]) -> None:
    """Dedup, frequency (the account's, then the platform-wide cap) and quota of every send still
    going whose limits are not yet decided: one atomic script call each, all in one Redis round trip.
    A refused quota refuses that send whole."""
    calls: list[tuple[int, list[Entry], limits.Decide]] = []
    for i, send in enumerate(sends):
        if results[i] is not None or send.limited:
            continue
        send.limited = True
        live = [e for e in send.entries if e.status == Status.QUEUED]
        if not live and not send.throttle:
            continue
        template = send.template
        dedup_window = template.effective_dedup_window
        frequency = limits.parse_frequency_limits(template.effective_frequency_limits)
        platform = platform_limits(category=template.category, channel=template.channel)
        checked = live if dedup_window or frequency or platform else []
        checks = (
            limits.BatchChecks(
                account_id=str(send.account.id),
                template_id=str(template.id),
                category=template.category,
                dedup_window=dedup_window or 0,
                frequency_limits=frequency,
                addresses=[e.address for e in checked],
                contents=[e.content for e in checked],
                platform_limits=platform,
            )
            if checked
            else None
        )
        decide = limits.Decide(
            quota_key(send.account, send.now),
            send.account.daily_quota,
            2 * 24 * 3600,
            checks,
            len(live) - len(checked),
            rate=(send.account.id, send.account.rate_limit) if send.throttle else None,
        )
        calls.append((i, checked, decide))
    if not calls:
        return
    try:
        decisions: list[limits.BatchDecision | Exception] = limiter().decide_many([call for _, _, call in calls])
    except (RedisConnectionError, RedisTimeoutError) as error:
        decisions = [error] * len(calls)
    for (i, checked, call), decision in zip(calls, decisions, strict=True):
        send, template = sends[i], sends[i].template
        if isinstance(decision, Exception):
            if not isinstance(decision, (RedisConnectionError, RedisTimeoutError)):
                results[i] = Unavailable(f"Limits cannot be checked right now ({decision}); nothing was sent.")
            elif checked:
                results[i] = Unavailable("Frequency limits cannot be checked right now (Redis is down); nothing was sent.")
            else:
                metrics.LIMITS_DEGRADED.inc()
            continue
        if decision.throttled_seconds:
            results[i] = rate_limited(decision.throttled_seconds)
            continue
        if not decision.quota_ok:
            account = send.account
            left = max(0, account.daily_quota - decision.used_today)
            results[i] = QuotaExceeded(
                f"The daily quota of {account.daily_quota} messages is used up ({left} left); nothing was sent.",
                headers={"Retry-After": str(seconds_to_midnight(send.now, account.timezone))},
            )
            continue
        capped = 0
        for entry, outcome in zip(checked, decision.outcomes, strict=True):
            if outcome == limits.DUPLICATE:
                entry.refuse(Status.SUPPRESSED, "duplicate", "The same content went to this address within the dedup window.")
            elif outcome == limits.FREQUENCY_LIMITED:
                entry.refuse(Status.REJECTED, "frequency_limited", f"Too many {template.category} messages to this address.")
            elif outcome >= limits.PLATFORM_CAPPED and call.checks is not None:
                window, maximum = call.checks.platform_limit(outcome)
                detail = platform_cap_detail(category=template.category, window=window, maximum=maximum)
                entry.refuse(Status.REJECTED, "frequency_limited", detail)
                capped += 1
        if capped:  # one increment per request: each writes a memory-mapped file in multi-process mode
            metrics.PLATFORM_CAP_REFUSALS.labels(template.category).inc(capped)


def write_group(sends: Sequence[PreparedSend]) -> list[SendResult | object]:
    """Writes a group of sends in one transaction; returns each one's response or error. It never
    raises: a group is not written a second time (its limits are already counted)."""
    results: list[SendResult | object | None] = [None] * len(sends)
    first: dict[tuple[uuid.UUID, str], int] = {}
    repeats: dict[int, int] = {}  # a key repeated within the group → where it came first
    for i, send in enumerate(sends):
        if send.idempotency_key:
            came_first = first.setdefault((send.account.id, send.idempotency_key), i)
            if came_first != i:
                repeats[i] = came_first
    own = [i for i in range(len(sends)) if i not in repeats]
    metrics.SEND_GROUP_REQUESTS.observe(len(sends))
    started = time.perf_counter()
    rows = _write_in_transaction([sends[i] for i in own], own, results)
    if rows is None and len(own) > 1:
        # The group's transaction failed (a deadlock, a row the database refused, …): each send whose
        # outcome was still open is written again on its own, with the limits it already has — so
        # one bad request fails only itself, and nobody's limits are counted twice.
        rows = []
        for i in own:
            if results[i] is None:
                rows += _write_in_transaction([sends[i]], [i], results) or []
    # Published by the caller whose thread wrote the group (sends[0] is its own request), after it
    # has answered the group and handed the next group over: the next write need not wait for it.
    sends[0].to_publish += rows or []
    metrics.SEND_GROUP_SECONDS.observe(time.perf_counter() - started)
    for i, came_first in repeats.items():
        result = results[came_first]
        same = isinstance(result, SendResponse) and sends[came_first].fingerprint == sends[i].fingerprint
        results[i] = result if same else AGAIN
    return results


def _write_in_transaction(
    sends: list[PreparedSend], where: list[int], results: list[SendResult | object | None]
) -> list[outbox.OutboxRow] | None:
    """`_write_own` in a transaction; on failure every send still open gets its own copy of the
    error (one exception object is not raised in several threads) and None is returned."""
    try:
        with transaction.atomic():
            return _write_own(sends, where, results)
    except Exception as error:  # each caller raises its own (a database error as the 503)
        logger.warning("writing %d send request(s) failed: %r", len(sends), error)
        for i, send in zip(where, sends, strict=True):
            send.written = False
            if not isinstance(results[i], ServiceError):  # a refusal decided before the failure stands
                results[i] = None if len(sends) > 1 else _copy_error(error)
        return None


def _copy_error(error: Exception) -> Exception:
    if isinstance(error, (DatabaseError, psycopg.Error)):
        failure: Exception = Unavailable(f"The messages could not be stored: {error}")
    else:
        failure = RuntimeError(f"The messages could not be stored: {error!r}")
    failure.__cause__ = error
    return failure


def _write_own(sends: list[PreparedSend], where: list[int], results: list[SendResult | object | None]) -> list[outbox.OutboxRow]:
    """The group's writes, in the caller's transaction; returns the outbox rows to publish. A send
    written again after a failed group keeps the limit outcomes it got (they are on its entries)."""
    own_results: list[SendResult | None] = [None] * len(sends)
    _claim_keys(sends, own_results)
    apply_limits(sends, own_results)
    written: list[PreparedSend] = []
    bodies: list[bytes] = []
    lanes: dict[str, list[uuid.UUID]] = {}
    for send, result in zip(sends, own_results, strict=True):
        if result is not None:
            continue
        if not send.finalized:
            schedule_entries(send.entries, send.template, send.request, send.now)
            seal_entries(send.entries, send.template, send.secret_params)
            send.finalized = True
        lanes.setdefault(send.lane, []).extend(
            mid for e, mid in zip(send.entries, send.message_ids, strict=True) if e.status == Status.QUEUED
        )
        bodies.append(response_body(send.entries, send.message_ids, send.batch_id))
        written.append(send)
    refused = [s.record_id for s, r in zip(sends, own_results, strict=True) if r is not None and s.record_id]
    messages: list[dict[str, Any]] | None = None
    if sum(len(s.entries) for s in written) <= INLINE_MAX_MESSAGES:
        messages = [row for send in written for row in inline_rows(send)]
    else:
        lines = [line for send in written for line in copy_lines(send)]
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY dispatch_message ({MESSAGE_COLUMNS}) FROM STDIN") as copy:
            copy.write("\n".join(lines) + "\n")
    rows = outbox.chunk_rows(lanes)  # the group's queued messages share tasks, lane by lane
    if written or refused:
        write_finish(written=written, bodies=bodies, rows=rows, refused=refused, messages=messages)
    responses = dict(zip(map(id, written), bodies, strict=True))
    for send, result, i in zip(sends, own_results, where, strict=True):
        send.written = id(send) in responses
        results[i] = SendResponse(202, responses[id(send)]) if send.written else result
    return rows


SENDS: GroupCommit[PreparedSend, SendResult | object] = GroupCommit(write_group)


def take_request_token(account: Account) -> None:
    """The account's request rate for a request that is not written (invalid): 429 when over it."""
    decision = throttling.take_request_token(account)
    if not decision.allowed:
        raise rate_limited(decision.retry_after_seconds)
