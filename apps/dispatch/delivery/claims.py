"""Claiming messages by conditional UPDATE before sending, and closing those whose TTL ran out.
A duplicated task, a redelivery after a crash or a sweeper re-enqueue finds the message already
claimed or finished and does nothing (DESIGN.md, reliability rules)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from psycopg.rows import dict_row

from apps.dispatch import status_hooks, transitions
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
    category: str
    expires_at: dt.datetime
    needs_reconcile: bool
    user_id: str
    account_id: uuid.UUID
    # The provider id the previous attempt left: a batch call's reference until a provider id replaces it.
    previous_reference: str
    # The destination segment (apps.dispatch.segments): routing's delivery figures, rules and prices are by it.
    segment: str
    # A `sending` row whose lease ran out (its worker died mid-send): that lease.
    lost_lease: dt.datetime | None = None
    # When this attempt was claimed (set by claim_read): its outcome's event carries it.
    claimed_at: dt.datetime | None = None


def claim(message_ids: Sequence[uuid.UUID]) -> list[Claimed]:
    """Claims what is claimable of these messages, choosing no providers (see claim_read)."""
    return claim_read(read_claimable(message_ids))


def read_claimable(message_ids: Sequence[uuid.UUID]) -> list[Claimed]:
    """Expires what has run out of time and reads what is claimable (the two are disjoint: `now()`
    is one moment in a statement), each as it will be once claimed (its attempt counted)."""
    with bound_cursor() as cursor:
        cursor.row_factory = dict_row
        cursor.execute(transitions.READ_CLAIMABLE, {"ids": list(message_ids)})
        rows = cursor.fetchall()
    _expired([(row["id"], row["content"], row["attempt"], row["lost_lease"]) for row in rows if row["expired"]])
    return [_claimed(row) for row in rows if not row["expired"]]


_CLAIMED_FIELDS = tuple(f.name for f in fields(Claimed) if f.name != "claimed_at")


def _claimed(row: Mapping[str, Any]) -> Claimed:
    values = {name: row[name] for name in _CLAIMED_FIELDS}
    if isinstance(values["params"], str):
        values["params"] = json.loads(values["params"])
    return Claimed(**values)


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
            transitions.CLAIM,
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
        cursor.execute(transitions.EXPIRE, {"ids": list(message_ids)})
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
            transitions.INBOX_DELIVERED,
            {"ids": [c.id for c in claimed], "rows": json_rows({"id": c.id, "attempt": c.attempt} for c in claimed)},
        )
        done = [row[0] for row in cursor.fetchall()]
    attempts = {c.id: c.attempt for c in claimed}
    record_events(
        [(mid, Status.DELIVERED, "", "stored in the recipient's inbox", "inbox", attempts[mid]) for mid in done],
        started={c.id: c.claimed_at for c in claimed},
    )

    status_hooks.messages_reached(done, "delivered")
    return done
