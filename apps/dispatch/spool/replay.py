"""Spooled messages into PostgreSQL once it is back: each once, with its status, events and
verification code, then out of the spool."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.selectors import preferences_opted_out
from apps.dispatch import outbox, status_hooks
from apps.dispatch.accept.rows import MESSAGE_COLUMNS
from apps.dispatch.leases import queued_lease
from apps.dispatch.models import Status
from apps.dispatch.spool import store
from messaging_center import metrics
from messaging_center.db import bound_cursor, json_rows

logger = logging.getLogger(__name__)

BATCH = 500
_COLUMNS = f"{MESSAGE_COLUMNS}, sent_at"
# ON CONFLICT on the primary key, which is the partition key: a message replayed before (a replay
# that died between its commit and clearing the spool) is left as it is, and so are its events.
_INSERT_MESSAGES = f"""
INSERT INTO dispatch_message ({_COLUMNS})
SELECT {_COLUMNS} FROM json_populate_recordset(NULL::dispatch_message, %(rows)s::json)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""  # noqa: S608 - fixed column lists
_INSERT_EVENTS = """
INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt, started_at)
SELECT id, message_id, status, at, code, detail, provider, attempt, started_at
FROM json_populate_recordset(NULL::dispatch_messageevent, %(rows)s::json)
WHERE message_id = ANY(%(inserted)s)
"""
# The verification codes' table belongs to apps.verifications, above dispatch: written here by name,
# as the rollup triggers of migration 0011 read it.
_INSERT_VERIFICATIONS = """
INSERT INTO receipts_verification (id, account_id, address, template_code, message_id, code_hash, state, failed_checks,
                                   created_at, expires_at)
SELECT id, account_id, address, template_code, message_id, code_hash, 'live', 0, created_at, expires_at
FROM json_populate_recordset(NULL::receipts_verification, %(rows)s::json)
WHERE message_id = ANY(%(inserted)s)
"""
# Statuses a replayed message may have that a worker still acts on: published again after the commit.
_TO_DELIVER = (Status.QUEUED, Status.RETRY_WAIT)


def replay_spool() -> int:
    """One batch of the oldest spooled messages into PostgreSQL; returns how many were stored
    (0 also when the spool is empty, which puts Redis's fsync setting back)."""
    oldest = store.oldest(BATCH)
    if not oldest:
        if not store.size():
            store.restore_fsync()
        return 0
    # Reachable before anything is taken: a taken message is claimed by no spool worker until stored.
    connection.ensure_connection()
    taken = store.take(oldest)
    if not taken:
        return 0
    now = timezone.now()
    rows = [_row(spooled, now) for spooled in taken]
    _apply_opt_outs(rows, [s.data.get("hold", False) for s in taken])
    events = [event for spooled in taken for event in spooled.events]
    verifications = [
        spooled.data["verification"]
        | {"message_id": spooled.id_hex, "account_id": row["account_id"], "created_at": row["created_at"]}
        | {"expires_at": row["expires_at"]}
        for spooled, row in zip(taken, rows, strict=True)
        if spooled.data.get("verification")
    ]
    with transaction.atomic():
        with bound_cursor() as cursor:
            cursor.execute(_INSERT_MESSAGES, {"rows": json_rows(rows)})
            inserted = [row[0] for row in cursor.fetchall()]
            if events and inserted:
                cursor.execute(_INSERT_EVENTS, {"rows": json_rows(events), "inserted": inserted})
            if verifications and inserted:
                cursor.execute(_INSERT_VERIFICATIONS, {"rows": json_rows(verifications), "inserted": inserted})
        new = {str(message_id) for message_id in inserted}
        outbox.enqueue((uuid.UUID(r["id"]), r["priority"]) for r in rows if r["id"] in new and r["status"] in _TO_DELIVER)
    store.remove([s.id_hex for s in taken])
    store.mark_replayed(settings.VERIFICATION_FAILOVER_SECONDS)
    metrics.MESSAGES_REPLAYED.inc(len(inserted))
    logger.info("spool: %d message(s) replayed, %d were in the database already", len(inserted), len(rows) - len(inserted))
    by_status: dict[str, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        if row["id"] in new and row["status"] in (Status.SENT, Status.FAILED, Status.EXPIRED):
            by_status[row["status"]].append(uuid.UUID(row["id"]))
    for status, message_ids in by_status.items():  # status callbacks, and receipts that came before this
        status_hooks.messages_reached(message_ids, status)
    return len(inserted)


def _row(spooled: store.Spooled, now: dt.datetime) -> dict[str, Any]:
    """The message's row as the send path wrote it, moved on by what happened to it in the spool."""
    row = spooled.row()
    if row["status"] == Status.SENDING:  # its worker died mid-send (its lease ran out): sent again, as after a crash
        row["status"] = Status.RETRY_WAIT
    if row["status"] in _TO_DELIVER:
        row["lease_until"] = (now + queued_lease()).isoformat()
    return row


def _apply_opt_outs(rows: Sequence[dict[str, Any]], held: Sequence[bool]) -> None:
    """Messages that waited in the spool for the database (transactional) are checked against their
    recipients' preferences now, as the send path would have: an opted-out one is `suppressed`."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row, waited in zip(rows, held, strict=True):
        if waited and row["status"] in (Status.QUEUED, Status.SCHEDULED):
            groups[(row["account_id"], row["category"], row["channel"])].append(row)
    for (account_id, category, channel), group in groups.items():
        opted_out = preferences_opted_out(
            account_id=uuid.UUID(account_id),
            category=category,
            channel=channel,
            user_ids=[r["user_id"] for r in group if r["user_id"]],
            addresses=[r["address"] for r in group],
        )
        for row in group:
            if row["address"] in opted_out or (row["user_id"] and row["user_id"] in opted_out):
                row |= {
                    "status": Status.SUPPRESSED,
                    "code": "opted_out",
                    "detail": f"The recipient opted out of {category} {channel}.",
                    "lease_until": None,
                }
