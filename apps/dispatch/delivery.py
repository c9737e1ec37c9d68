"""The worker side: claim messages by conditional UPDATE, hand each to its channel, finish
conditionally. A duplicated task, a redelivery after a crash or a sweeper re-enqueue finds the
message already claimed or finished and does nothing (DESIGN.md, reliability rules)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import connection, transaction
from redis.exceptions import RedisError

from apps.dispatch import publish
from apps.dispatch.engine import choose_providers, send_through_providers
from apps.dispatch.models import Status
from messaging_center import ids
from messaging_center.broker import broker_client, queue_depths
from messaging_center.db import bound_cursor, json_rows


def sending_lease() -> dt.timedelta:
    """How long a claimed message may stay `sending` before the sweeper assumes its worker died."""
    return dt.timedelta(seconds=settings.DISPATCH_SENDING_LEASE_SECONDS)


def lease_start(lease_until: dt.datetime) -> dt.datetime:
    """When the attempt holding this `sending` lease was claimed: its lease less the lease's length
    (exact while DISPATCH_SENDING_LEASE_SECONDS is unchanged)."""
    return lease_until - sending_lease()


def queued_lease() -> dt.timedelta:
    """A queued message whose task the broker lost is found by the sweeper once this runs out."""
    return dt.timedelta(seconds=settings.DISPATCH_QUEUED_LEASE_SECONDS)


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    channel: str
    address: str
    attempt: int
    template_id: uuid.UUID | None
    content: str
    title: str
    params: dict[str, str]
    previous_provider: str
    priority: str
    expires_at: dt.datetime
    needs_reconcile: bool
    user_id: str
    account_id: uuid.UUID
    # The provider id the previous attempt left: a batch call's reference until a provider id replaces it.
    previous_reference: str
    # A `sending` row whose lease ran out (its worker died mid-send): that lease.
    lost_lease: dt.datetime | None = None
    # When this attempt was claimed (set by claim_read): its outcome's event carries it.
    claimed_at: dt.datetime | None = None


def record_events(
    rows: Sequence[tuple[uuid.UUID, str, str, str, str, int | None]],
    *,
    first: bool = False,
    started: Mapping[uuid.UUID, dt.datetime | None] | None = None,
    once: bool = False,
) -> None:
    """(message id, status, code, detail, provider, attempt) → one MessageEvent each, one statement.
    `first`: each is its message's first event, stored under the message's own id (a message the
    send API did not make: see selectors.message_timeline). `started`: message id → when the
    attempt these events end was claimed (the timeline's `sending` event of that attempt). `once`:
    not when the message has an event of that code for that attempt already."""
    if not rows:
        return
    event_ids = [row[0] for row in rows] if first else ids.uuid7_many(len(rows))
    started = started or {}
    events = json_rows(
        {"id": event_id, "m": mid, "s": status, "c": code, "d": detail, "p": provider, "a": attempt, "t": started.get(mid)}
        for event_id, (mid, status, code, detail, provider, attempt) in zip(event_ids, rows, strict=True)
    )
    with bound_cursor() as cursor:
        cursor.execute(
            "INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt, started_at) "
            "SELECT e.id, e.m, e.s, now(), e.c, e.d, e.p, e.a, e.t "
            "FROM json_to_recordset(%s::json) AS e(id uuid, m uuid, s text, c text, d text, p text, a int, t timestamptz)"
            + (_ONCE if once else ""),
            [events],
        )


_ONCE = " WHERE NOT EXISTS (SELECT 1 FROM dispatch_messageevent x WHERE x.message_id = e.m AND x.attempt = e.a AND x.code = e.c)"


def record_lost_attempts(lost: Sequence[tuple[uuid.UUID, int, str, dt.datetime]]) -> None:
    """(message id, attempt, provider, its lapsed lease): attempts whose worker died mid-send, found
    by the sweeper or by a claim (both may find the same one: it is recorded once). Each gets an
    event that ends it, so that the timeline still shows it."""
    record_events(
        [
            (
                mid,
                Status.RETRY_WAIT,
                "worker_lost",
                f"the worker stopped before the outcome of attempt {attempt} was known"
                + (f"; {provider} is asked before sending again" if provider else ""),
                provider,
                attempt,
            )
            for mid, attempt, provider, _ in lost
        ],
        started={mid: lease_start(lease_until) for mid, _, _, lease_until in lost},
        once=True,
    )


# Messages of the chunk whose TTL ran out before a provider took them → `expired`, keeping the last error.
_EXPIRE = """
    UPDATE dispatch_message SET status = 'expired', code = 'ttl_expired', lease_until = NULL,
           detail = 'The TTL passed before a provider accepted the message'
                    || CASE WHEN code <> '' THEN ' (last error: ' || code || ')' ELSE '' END || '.'
    WHERE id = ANY(%(ids)s) AND status IN ('scheduled', 'queued', 'retry_wait', 'sending') AND expires_at <= now()
    RETURNING id, detail
"""


# The expired rows as they were (the statement's one snapshot does not see its own UPDATE), and the
# lease of the attempt that was under way in those that were `sending`: the expiry ends it.
_EXPIRED_ROWS = "FROM expired e JOIN dispatch_message d ON d.id = e.id"
_UNDER_WAY = "CASE WHEN d.status = 'sending' THEN d.lease_until END"

# Claimable: waiting, or `sending` with its lease run out (the worker died mid-send), and still in time.
_CLAIMABLE = "(status IN ('queued', 'retry_wait') OR (status = 'sending' AND lease_until < now())) AND expires_at > now()"


def claim(message_ids: Sequence[uuid.UUID]) -> list[Claimed]:
    """Claims what is claimable of these messages, choosing no providers (see claim_read)."""
    return claim_read(read_claimable(message_ids))


def read_claimable(message_ids: Sequence[uuid.UUID]) -> list[Claimed]:
    """Expires what has run out of time and reads what is claimable (the two are disjoint: `now()`
    is one moment in a statement), each as it will be once claimed (its attempt counted)."""
    with bound_cursor() as cursor:
        cursor.execute(
            f"""
            WITH expired AS ({_EXPIRE})
            SELECT FALSE, id, channel, address, attempts + 1, template_id, content, title, params, provider, priority,
                   expires_at, needs_reconcile OR (status = 'sending' AND provider <> ''), user_id, account_id,
                   provider_message_id, CASE WHEN status = 'sending' THEN lease_until END
            FROM dispatch_message WHERE id = ANY(%(ids)s) AND {_CLAIMABLE}
            UNION ALL
            SELECT TRUE, e.id, NULL, NULL, d.attempts, NULL, e.detail, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   {_UNDER_WAY}
            {_EXPIRED_ROWS}
            """,  # noqa: S608 - _EXPIRE, _CLAIMABLE and the rest are constants
            {"ids": list(message_ids)},
        )
        rows = cursor.fetchall()
    _expired([(row[1], row[6], row[4], row[16]) for row in rows if row[0]])
    return [Claimed(*row[1:8], json.loads(row[8]) if isinstance(row[8], str) else row[8], *row[9:]) for row in rows if not row[0]]


def claim_read(candidates: Sequence[Claimed], recorded: Mapping[uuid.UUID, tuple[str, str]] | None = None) -> list[Claimed]:
    """Claims messages read by read_claimable, on the attempt count read (a message claimed
    elsewhere in between is left alone); each comes back with its claim's time, which the event of
    its outcome carries (no `sending` event is stored). `recorded`: message id → (provider, batch
    reference) chosen for it where a crash mid-send could be reconciled, so that no statement
    between the claim and the send is needed."""
    if not candidates:
        return []
    recorded = recorded or {}
    claims = []
    for c in candidates:
        provider, reference = recorded.get(c.id, ("", ""))
        claims.append({"id": c.id, "seen": c.attempt - 1, "provider": provider, "ref": reference})
    with bound_cursor() as cursor:
        cursor.execute(
            f"""
            WITH claimed AS (
                UPDATE dispatch_message AS m SET status = 'sending', attempts = m.attempts + 1, lease_until = now() + %(lease)s,
                       -- re-claiming a `sending` row: its worker died mid-send, the provider may have it
                       needs_reconcile = m.needs_reconcile OR (m.status = 'sending' AND m.provider <> ''),
                       provider = CASE WHEN c.provider <> '' THEN c.provider ELSE m.provider END,
                       provider_message_id = CASE WHEN c.ref <> '' THEN c.ref ELSE m.provider_message_id END
                FROM json_to_recordset(%(claims)s::json) AS c(id uuid, seen int, provider text, ref text)
                WHERE m.id = c.id AND m.id = ANY(%(ids)s) AND m.attempts = c.seen AND {_CLAIMABLE}
                RETURNING m.id, now()
            )
            SELECT id, now FROM claimed
            """,  # noqa: S608 - _CLAIMABLE is a constant
            {"lease": sending_lease(), "ids": [c.id for c in candidates], "claims": json_rows(claims)},
        )
        won = dict(cursor.fetchall())
    lost = [(c.id, c.attempt - 1, c.previous_provider, c.lost_lease) for c in candidates if c.id in won and c.lost_lease]
    if lost:
        record_lost_attempts(lost)
    return [replace(c, claimed_at=won[c.id]) for c in candidates if c.id in won]


def expire(message_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Messages whose TTL ran out before a provider took them → `expired`, keeping the last error."""
    with bound_cursor() as cursor:
        cursor.execute(
            f"WITH expired AS ({_EXPIRE}) SELECT e.id, e.detail, d.attempts, {_UNDER_WAY} {_EXPIRED_ROWS}",
            {"ids": list(message_ids)},
        )
        expired = cursor.fetchall()
    _expired(expired)
    return [row[0] for row in expired]


def _expired(expired: Sequence[tuple[uuid.UUID, str, int, dt.datetime | None]]) -> None:
    """(message id, detail, attempts, the lease of the attempt the expiry ends, if one was under way)."""
    if not expired:
        return
    record_events(
        [
            (mid, Status.EXPIRED, "ttl_expired", detail, "", attempts if under_way else None)
            for mid, detail, attempts, under_way in expired
        ],
        started={mid: lease_start(under_way) for mid, _, _, under_way in expired if under_way},
    )
    from apps.receipts.hooks import messages_reached  # status callbacks to business systems

    messages_reached([row[0] for row in expired], "expired")


def finish_delivered_inbox(claimed: Sequence[Claimed]) -> list[uuid.UUID]:
    """The in-site inbox: storing the message for the recipient is delivering it."""
    if not claimed:
        return []
    with bound_cursor() as cursor:
        cursor.execute(
            """
            UPDATE dispatch_message AS m SET status = 'delivered', provider = 'inbox', sent_at = now(), delivered_at = now(),
                   lease_until = NULL
            FROM unnest(%s::uuid[], %s::int[]) AS c(id, attempt)
            WHERE m.id = c.id AND m.id = ANY(%s) AND m.status = 'sending' AND m.attempts = c.attempt
            RETURNING m.id
            """,
            [[c.id for c in claimed], [c.attempt for c in claimed], [c.id for c in claimed]],
        )
        done = [row[0] for row in cursor.fetchall()]
    attempts = {c.id: c.attempt for c in claimed}
    record_events(
        [(mid, Status.DELIVERED, "", "stored in the recipient's inbox", "inbox", attempts[mid]) for mid in done],
        started={c.id: c.claimed_at for c in claimed},
    )
    from apps.receipts.hooks import messages_reached  # status callbacks to business systems

    messages_reached(done, "delivered")
    return done


def deliver_messages(message_ids: Sequence[uuid.UUID], *, lane: str = "") -> None:
    if lane in YIELDING_LANES:
        yield_to_critical()
    with critical_in_flight(lane == "critical"):
        candidates = read_claimable(message_ids)
        to_providers = [c for c in candidates if c.channel != "inbox"]
        choice = choose_providers(to_providers) if to_providers else None
        claimed = claim_read(candidates, choice.recorded() if choice else None)
        finish_delivered_inbox([c for c in claimed if c.channel == "inbox"])
        send_through_providers([c for c in claimed if c.channel != "inbox"], choice)


# Verification codes first: a normal or bulk chunk does not start while codes wait in the critical
# queue or are being sent. On a small box both lanes share the CPUs, the database and the providers'
# connections; a bulk chunk started beside a code makes the code wait (measured: a 100k bulk backlog
# took the critical lane's p99 from ~40 ms to over 500 ms). The wait is bounded, so a stream of codes
# slows bulk down but cannot stop it.
YIELDING_LANES = frozenset({"normal", "bulk"})
CRITICAL_IN_FLIGHT_KEY = "mc:critical:in-flight"
YIELD_MAX_SECONDS = 1.0
YIELD_POLL_SECONDS = 0.02


def yield_to_critical() -> None:
    deadline = time.monotonic() + YIELD_MAX_SECONDS
    client = broker_client()
    while True:
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.llen("mc.critical")
                pipe.get(CRITICAL_IN_FLIGHT_KEY)
                queued, in_flight = pipe.execute()
        except RedisError:
            return
        if (not queued and int(in_flight or 0) <= 0) or time.monotonic() >= deadline:
            return
        time.sleep(YIELD_POLL_SECONDS)


@contextlib.contextmanager
def critical_in_flight(active: bool) -> Iterator[None]:
    """Counts critical chunks being worked on (the count expires, should a worker die mid-chunk)."""
    if not active:
        yield
        return
    client = broker_client()
    with contextlib.suppress(RedisError), client.pipeline(transaction=False) as pipe:
        pipe.incr(CRITICAL_IN_FLIGHT_KEY)
        pipe.pexpire(CRITICAL_IN_FLIGHT_KEY, 10_000)
        pipe.execute()
    try:
        yield
    finally:
        with contextlib.suppress(RedisError):
            client.decr(CRITICAL_IN_FLIGHT_KEY)


def enqueue_due(*, batch: int = 1000) -> int:
    """Scheduled messages whose time has come → `queued`, published in chunks per lane."""
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """
                WITH due AS (
                    SELECT id FROM dispatch_message
                    WHERE status = 'scheduled' AND scheduled_at <= now()
                    ORDER BY scheduled_at LIMIT %s FOR UPDATE SKIP LOCKED
                )
                UPDATE dispatch_message AS m SET status = 'queued', lease_until = now() + %s
                FROM due WHERE m.id = due.id
                RETURNING m.id, m.priority
                """,
                [batch, queued_lease()],
            )
            due = cursor.fetchall()
            record_events([(mid, Status.QUEUED, "", "due", "", None) for mid, _ in due])
            publish.enqueue(due)
        total += len(due)
        if len(due) < batch:
            return total


def sweep(*, batch: int = 1000) -> int:
    """Messages left queued/retry_wait/sending past their lease (a lost task, a dead worker, a
    flushed broker) are enqueued again; expired ones are closed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id FROM dispatch_message
            WHERE status IN ('queued', 'retry_wait', 'sending') AND lease_until < now() AND expires_at <= now()
            LIMIT %s
            """,
            [batch],
        )
        expire([row[0] for row in cursor.fetchall()])
    try:
        idle_lanes = [queue.removeprefix("mc.") for queue, depth in queue_depths().items() if depth == 0]
    except RedisError:
        idle_lanes = []
    with transaction.atomic(), connection.cursor() as cursor:
        # A queued message past its lease is only lost if its lane has drained (or it is long
        # overdue): re-enqueueing behind a backlog that still holds its task would only add copies.
        cursor.execute(
            """
            WITH lost AS (
                SELECT id, status, lease_until, attempts, provider FROM dispatch_message
                WHERE lease_until < now()
                  AND (status IN ('retry_wait', 'sending')
                       OR (status = 'queued' AND (priority = ANY(%s) OR lease_until < now() - %s)))
                ORDER BY lease_until LIMIT %s FOR UPDATE SKIP LOCKED
            )
            UPDATE dispatch_message AS m SET lease_until = now() + %s,
                   -- a worker died mid-send: its provider may have the message, ask before resending
                   status = CASE WHEN m.status = 'sending' THEN 'retry_wait' ELSE m.status END,
                   needs_reconcile = m.needs_reconcile OR (m.status = 'sending' AND m.provider <> '')
            FROM lost WHERE m.id = lost.id
            RETURNING m.id, m.priority, lost.status, lost.lease_until, lost.attempts, lost.provider
            """,
            [idle_lanes, queued_lease() * 10, batch, queued_lease()],
        )
        lost = cursor.fetchall()
        record_lost_attempts([(row[0], row[4], row[5], row[3]) for row in lost if row[2] == Status.SENDING])
        publish.enqueue([(row[0], row[1]) for row in lost])
    return len(lost)
