"""Claiming messages by conditional UPDATE before sending, and closing those whose TTL ran out.
A duplicated task, a redelivery after a crash or a sweeper re-enqueue finds the message already
claimed or finished and does nothing (DESIGN.md, reliability rules)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from apps.dispatch import status_hooks
from apps.dispatch.events import record_events, record_lost_attempts
from apps.dispatch.leases import lease_start, sending_lease
from apps.dispatch.models import Status
from messaging_center.db import bound_cursor, json_rows


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
    # One starred tuple: mypy cannot map two starred slices around a positional argument.
    return [
        Claimed(*(*row[1:8], json.loads(row[8]) if isinstance(row[8], str) else row[8], *row[9:])) for row in rows if not row[0]
    ]


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

    status_hooks.messages_reached([row[0] for row in expired], "expired")


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

    status_hooks.messages_reached(done, "delivered")
    return done
