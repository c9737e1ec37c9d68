"""Receipts matched to their messages, which move forward (`sent` → `delivered`/`undelivered`, never
backwards), in one statement with their events and the status callbacks they owe. A report whose
message is not `sent` yet is kept unmatched and applied when it is."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.db import connection, transaction
from redis.exceptions import RedisError

from apps.dispatch import events, transitions
from apps.dispatch.lanes import yield_to_critical
from apps.dispatch.models import Provider, Status
from apps.dispatch.providers.base import Receipt
from apps.receipts import callbacks, failover
from messaging_center import ids, metrics
from messaging_center.broker import broker_client, push_task
from messaging_center.db import bound_cursor, json_rows

logger = logging.getLogger(__name__)
# The statuses a report may move a message out of, and those that keep it waiting (apps.dispatch.transitions).
APPLICABLE_FROM = transitions.RECEIPT_APPLICABLE_FROM
NOT_YET_SENT = transitions.NOT_YET_SENT
REMATCH_WINDOW = dt.timedelta(days=1)


# A report as it comes probes only the partitions of messages made in the last RECENT_MESSAGES (the
# id bound; a message table partitioned by day has one probe per partition otherwise). A report it
# leaves unmatched (a message scheduled days ahead, or not sent yet) is matched again without it.
RECENT_MESSAGES = dt.timedelta(days=2)
RECENT = "AND m.id >= %(recent)s"


# Report → message by (provider id, number) (one id may cover an Aliyun batch), else by the id alone (no number in
# the report, or one message for the id), else by our id; LATERAL probes, OFFSET 0 (docs/performance.md, Receipts).
# `{recent}`: RECENT or nothing.
PAIRS = """
    exact AS (
        SELECT r.id AS rid, m.id AS mid FROM r CROSS JOIN LATERAL (
            -- `<> ''` on m as well: the index is partial, and the join alone does not tell the planner so
            SELECT m.id FROM dispatch_message m
            WHERE m.provider = r.provider AND m.provider_message_id = r.provider_message_id AND m.address = r."to"
              AND m.provider_message_id <> '' {recent}
            OFFSET 0
        ) m
        WHERE r.provider_message_id <> '' AND r."to" <> ''
    ), pairs AS (
        SELECT rid, mid FROM exact
        UNION ALL
        SELECT r.id, m.id FROM r CROSS JOIN LATERAL (
            SELECT m.id FROM dispatch_message m
            WHERE m.provider = r.provider AND m.provider_message_id = r.provider_message_id AND m.provider_message_id <> ''
              {recent}
            OFFSET 0
        ) m
        WHERE r.provider_message_id <> '' AND r."to" = ''
        UNION ALL
        SELECT r.id, sole.ids[1] FROM r CROSS JOIN LATERAL (
            SELECT array_agg(first_two.id) AS ids FROM (
                SELECT m.id FROM dispatch_message m
                WHERE m.provider = r.provider AND m.provider_message_id = r.provider_message_id
                  AND m.provider_message_id <> '' {recent} LIMIT 2
            ) first_two
        ) sole
        WHERE r.provider_message_id <> '' AND r."to" <> '' AND cardinality(sole.ids) = 1
          AND r.id NOT IN (SELECT rid FROM exact)  -- a hashed filter on r, before the probes
        UNION
        SELECT r.id, m.id FROM r JOIN dispatch_message m ON m.id = r.message_ref AND m.provider = r.provider
    )"""


@dataclass(frozen=True)
class Applied:
    message_id: uuid.UUID
    status: str


def _receipt_rows(provider: Provider, receipts: Sequence[Receipt], source: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for receipt in receipts:
        ref = ids.decode("msg", receipt.message_id) if receipt.message_id else None
        provider_message_id = (receipt.provider_message_id or "")[:128]
        if not provider_message_id and ref is None:
            continue  # nothing to match it by
        rows.append(
            {
                "id": ids.uuid7(),
                "provider": provider.name,
                "kind": provider.kind,
                "source": source,
                "provider_message_id": provider_message_id,
                "message_ref": ref,
                "to": (receipt.to or "")[:255],
                "status": receipt.status,
                "code": receipt.code[:64],
                "detail": receipt.detail,
                "reported_at": receipt.at,
            }
        )
    return rows


# A report is applied by the statement that finds its message: `applicable` holds (receipt, message,
# report) for messages a provider has accepted (a message still being sent keeps its reports
# unmatched, see NOT_YET_SENT); this tail moves each message by its best report, records the event
# and returns the moved messages with the callback each one's account is owed. One round trip per
# batch, whichever way the reports came. The event ids are this process's UUIDv7s (one per report:
# after the `sent` event the same process may have just recorded, as the timeline orders by id);
# should a report without a number move more messages than that, the rest are UUIDv7s the
# database makes.
_APPLY = f"""
    best AS (
        -- Delivered wins over undelivered (a carrier may report a failed try, then success); else the first.
        SELECT DISTINCT ON (mid) mid, status, code, detail, reported_at FROM applicable
        ORDER BY mid, status <> 'delivered', reported_at, rid
    ), {transitions.RECEIPT_MOVE}, recorded AS (
        INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt, started_at)
        SELECT COALESCE((%(event_ids)s::uuid[])[row_number() OVER ()], {ids.UUID7_SQL}), id, status, now(), report_code,
               explanation, provider, NULL, NULL
        FROM moved
    )"""  # noqa: S608 - our own constants
_MOVED = "SELECT id, status, channel, provider, account_id, code, owed, latency FROM moved"
# Messages whose reports are applicable: provider accepted them (see NOT_YET_SENT).
_APPLICABLE = """
    SELECT pairs.rid, pairs.mid, r.status, r.code, r.detail, r.reported_at
    FROM pairs JOIN dispatch_message m ON m.id = pairs.mid JOIN r ON r.id = pairs.rid
    WHERE m.status <> ALL(%(not_yet_sent)s)"""


def _count_applied(rows: Sequence[tuple[Any, ...]]) -> None:
    for _, status, channel, provider, _, _, _, latency in rows:
        if status == "delivered" and latency is not None:
            metrics.RECEIPT_LATENCY.labels(channel, provider).observe(max(latency, 0.0))
    metrics.count(metrics.MESSAGES_DELIVERED, ((row[2], row[3]) for row in rows if row[1] == "delivered"))
    metrics.count(metrics.MESSAGES_UNDELIVERED, ((row[2], row[3]) for row in rows if row[1] != "delivered"))


def _applied(rows: Sequence[tuple[Any, ...]]) -> list[Applied]:
    """After the statement, in its transaction: the callbacks owed, failover; metrics once it commits."""

    if rows:
        transaction.on_commit(lambda: _count_applied(rows))
    for status in ("delivered", "undelivered"):
        callbacks.callbacks_create(owed=[(row[0], row[4], row[5]) for row in rows if row[1] == status and row[6]], status=status)
    undelivered = [row[0] for row in rows if row[1] == "undelivered"]
    if undelivered:
        # In a savepoint: a failover that fails must not undo the reports (a push would be refused
        # and retried by its provider forever); it is logged, and the reports stand.
        try:
            with transaction.atomic():
                failover.failover_on_undelivered(message_ids=undelivered)
        except Exception:
            logger.exception("failover of %d undelivered message(s) failed", len(undelivered))
    return [Applied(row[0], row[1]) for row in rows]


_STATEMENT_PARAMS = {"not_yet_sent": sorted(NOT_YET_SENT)}


def receipts_store_and_apply(rows: Sequence[Mapping[str, Any]]) -> tuple[list[uuid.UUID], list[Applied]]:
    """Stores new reports (a replay is dropped by the unique constraints) and applies each to its
    message if that one is sent already: one statement, in the caller's transaction. Returns the
    new reports left unmatched (their message not sent yet, or not found) and what was applied."""
    if not rows:
        return [], []
    with bound_cursor() as cursor:
        cursor.execute(
            f"""
            WITH input AS MATERIALIZED (
                SELECT * FROM json_to_recordset(%(rows)s::json) AS i(
                    id uuid, provider text, kind text, source text, provider_message_id text, message_ref uuid, "to" text,
                    status text, code text, detail text, reported_at timestamptz)
            ), r AS (SELECT * FROM input), {PAIRS.format(recent=RECENT)}, found AS ({_APPLICABLE}
            ), stored AS (
                INSERT INTO receipts_providerreceipt (id, provider, kind, source, provider_message_id, message_ref, "to",
                                                      status, code, detail, reported_at, received_at, message_id, matched_at)
                SELECT i.*, now(), c.mid, CASE WHEN c.mid IS NOT NULL THEN now() END
                FROM input i LEFT JOIN (SELECT DISTINCT ON (rid) rid, mid FROM found ORDER BY rid, mid) c ON c.rid = i.id
                ON CONFLICT DO NOTHING
                RETURNING id, message_id
            ), applicable AS (
                SELECT * FROM found WHERE rid IN (SELECT id FROM stored)
            ), {_APPLY}
            SELECT NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::uuid, NULL::text, NULL::bool, NULL::float8,
                   id, message_id IS NOT NULL FROM stored
            UNION ALL
            SELECT *, NULL, NULL FROM ({_MOVED}) moved_rows
            """,  # noqa: S608 - our own constants
            {
                "rows": json_rows(rows),
                "event_ids": ids.uuid7_many(len(rows)),
                "recent": ids.uuid7_floor(dt.datetime.now(dt.UTC) - RECENT_MESSAGES),
                **_STATEMENT_PARAMS,
            },
        )
        result = cursor.fetchall()
    stored = [(row[8], row[9]) for row in result if row[8] is not None]
    new = {receipt_id for receipt_id, _ in stored}
    received = [(row["provider"], row["source"]) for row in rows if row["id"] in new]
    transaction.on_commit(lambda: metrics.count(metrics.RECEIPTS_RECEIVED, received))
    applied = _applied([row[:8] for row in result if row[8] is None])
    return [receipt_id for receipt_id, matched in stored if not matched], applied


def receipts_record(*, provider: Provider, receipts: Sequence[Receipt], source: str) -> list[Applied]:
    """Stores new reports and applies them at once (polling); those of older messages, a second look."""
    with transaction.atomic():
        unmatched, applied = receipts_store_and_apply(_receipt_rows(provider, receipts, source))
    return applied + receipts_match(receipt_ids=unmatched)


# Pushed reports whose message was not `sent` yet when they came (the push beat the worker's
# finish) wait for the receipts worker: their ids in a Redis set; the first of a quiet spell queues
# one `receipts.match_pending` task. The sent hook applies most of them first; should Redis lose the
# set, the rows are still unmatched in the database and the re-match beat job applies them.
PENDING_KEY = "mc:receipts:pending"
SCHEDULED_KEY = "mc:receipts:match-scheduled"
MATCH_TASK = "receipts.match_pending"
MATCH_BATCH = 500


def receipts_match_soon(receipt_ids: Sequence[uuid.UUID]) -> None:
    if not receipt_ids:
        return
    client = broker_client()
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.sadd(PENDING_KEY, *(str(i) for i in receipt_ids))
            pipe.set(SCHEDULED_KEY, "1", nx=True, px=30_000)
            _, schedule = pipe.execute()
        if schedule:
            with client.pipeline(transaction=False) as pipe:
                push_task(pipe, MATCH_TASK, "mc.receipts", [])
                pipe.execute()
    except RedisError as error:
        logger.warning("%d receipt(s) left for the re-match job: %s", len(receipt_ids), error)
    except Exception:  # after the reports' commit: never fail the push (the re-match job finds them)
        logger.exception("%d receipt(s) left for the re-match job", len(receipt_ids))


def receipts_match_pending() -> int:
    """The receipts worker's side: applies every pending pushed report, a batch at a time."""
    client = broker_client()
    applied = 0
    while True:
        # Applying reports is background work: like a bulk chunk, a batch waits for codes in flight.
        yield_to_critical()
        batch = cast("Iterable[bytes | str] | None", client.spop(PENDING_KEY, MATCH_BATCH))  # SPOP with a count: members
        if not batch:
            # A push that adds ids after this point finds no schedule mark and queues a new task;
            # one that added them just before is caught by the second look.
            client.delete(SCHEDULED_KEY)
            if not client.scard(PENDING_KEY):
                return applied
            continue
        applied += len(receipts_match(receipt_ids=[uuid.UUID(i.decode() if isinstance(i, bytes) else i) for i in batch]))


def receipts_match(*, receipt_ids: Sequence[uuid.UUID]) -> list[Applied]:
    """Matches stored, unmatched receipts to their messages and moves those messages forward, in
    one statement. A receipt whose message is not `sent` yet stays unmatched; the sent hook or the
    re-match job applies it later."""
    if not receipt_ids:
        return []
    with transaction.atomic(savepoint=False), bound_cursor() as cursor:
        cursor.execute(
            f"""
            -- MATERIALIZED: by id alone, through the primary key. With `message_id IS NULL` beside
            -- it, the planner may read a whole partial index of unmatched receipts instead (it did,
            -- with statistics from before a storm: hundreds of entries read per receipt).
            WITH by_id AS MATERIALIZED (
                SELECT * FROM receipts_providerreceipt WHERE id = ANY(%(ids)s)
            ), r AS (
                SELECT * FROM by_id WHERE message_id IS NULL
            ), {PAIRS.format(recent="")}, applicable AS ({_APPLICABLE}
            ), matched AS (
                UPDATE receipts_providerreceipt AS x SET message_id = c.mid, matched_at = now()
                FROM (SELECT DISTINCT ON (rid) rid, mid FROM applicable ORDER BY rid, mid) c
                -- `= ANY` too: with statistics from when the table was small, the join alone was
                -- planned as a sequential scan of every receipt.
                WHERE x.id = c.rid AND x.id = ANY(%(ids)s)
            ), {_APPLY}
            {_MOVED}
            """,  # noqa: S608 - our own constants
            {"ids": list(receipt_ids), "event_ids": ids.uuid7_many(len(receipt_ids)), **_STATEMENT_PARAMS},
        )
        return _applied(cursor.fetchall())


def receipts_match_for_messages(*, message_ids: Sequence[uuid.UUID]) -> list[Applied]:
    """Receipts that arrived before these messages were `sent` (the sent hook calls this)."""
    if not message_ids:
        return []
    with bound_cursor() as cursor:
        cursor.execute(
            """
            -- Candidates: the unmatched receipts of these messages' provider ids (an Aliyun batch's
            -- messages share one, hence DISTINCT) or ids; receipts_match decides by number which is
            -- whose. The messages by primary key (MATERIALIZED: a `provider_message_id <> ''` next to
            -- `id = ANY` let the planner read the whole partial index of sent messages instead), then
            -- one probe of a partial index of unmatched receipts per provider id and per message
            -- (OFFSET 0: see PAIRS; without it each probe became a full scan of the index, 360
            -- entries read per statement during a 30k delivery, and growing until vacuum).
            WITH sent AS MATERIALIZED (
                SELECT id, provider, provider_message_id FROM dispatch_message WHERE id = ANY(%(ids)s)
            )
            SELECT r.id FROM (SELECT DISTINCT provider, provider_message_id FROM sent WHERE provider_message_id <> '') p
            CROSS JOIN LATERAL (
                SELECT r.id FROM receipts_providerreceipt r
                WHERE r.provider = p.provider AND r.provider_message_id = p.provider_message_id
                  AND r.provider_message_id <> '' AND r.message_id IS NULL
                OFFSET 0
            ) r
            UNION
            SELECT r.id FROM sent CROSS JOIN LATERAL (
                SELECT r.id FROM receipts_providerreceipt r
                WHERE r.message_ref = sent.id AND r.message_id IS NULL AND r.provider = sent.provider
                OFFSET 0
            ) r
            """,
            {"ids": list(message_ids)},
        )
        receipt_ids = [row[0] for row in cursor.fetchall()]
    return receipts_match(receipt_ids=receipt_ids)


# The re-match job's read, through `receipt_unmatched` (received_at) WHERE matched_at IS NULL. The id
# bound (a receipt's UUIDv7 is made just before it is stored; an hour of slack) says the same window
# in the partition key's terms, so that a table partitioned by id reads only the last day's partitions.
REMATCH = """
    SELECT id FROM receipts_providerreceipt
    WHERE matched_at IS NULL AND received_at > now() - %(window)s AND id >= %(first_id)s
    ORDER BY received_at DESC LIMIT %(batch)s
"""


def rematch_params(*, batch: int = 1000) -> dict[str, Any]:
    first_id = ids.uuid7_floor(dt.datetime.now(dt.UTC) - REMATCH_WINDOW - dt.timedelta(hours=1))
    return {"window": REMATCH_WINDOW, "first_id": first_id, "batch": batch}


def receipts_rematch(*, batch: int = 1000) -> int:
    """Beat job: unmatched receipts of the last day, in case their message became `sent` since; of
    those still unmatched, the duplicates."""
    with connection.cursor() as cursor:
        cursor.execute(REMATCH, rematch_params(batch=batch))
        receipt_ids = [row[0] for row in cursor.fetchall()]
    matched = len(receipts_match(receipt_ids=receipt_ids))
    receipts_count_duplicates(receipt_ids=receipt_ids)
    return matched


DUPLICATE_EVENT = events.DUPLICATE_SEND
# A delivered report, by our id, from a provider other than the one a sent or delivered message went
# through: an earlier attempt whose outcome was unknown reached the person too. Such a report never
# matches (it names another provider); it is matched to its message here, and the message gets one
# `duplicate_send` event (the count's once-only record). Rows: the channel of each message counted.
DUPLICATES = f"""
    WITH dup AS MATERIALIZED (
        SELECT r.id AS rid, m.id AS mid, m.channel, m.status, m.attempts, r.provider
        FROM receipts_providerreceipt r JOIN dispatch_message m ON m.id = r.message_ref
        WHERE r.id = ANY(%(ids)s) AND r.matched_at IS NULL AND r.status = '{Status.DELIVERED}'
          AND m.provider <> r.provider AND m.status IN ('{Status.SENT}', '{Status.DELIVERED}')
    ), matched AS (
        UPDATE receipts_providerreceipt AS x SET message_id = dup.mid, matched_at = now()
        FROM dup WHERE x.id = dup.rid AND x.id = ANY(%(ids)s)
    ), firsts AS (
        SELECT DISTINCT ON (mid) * FROM dup
        WHERE NOT EXISTS (SELECT 1 FROM dispatch_messageevent e WHERE e.message_id = dup.mid AND e.code = '{DUPLICATE_EVENT}')
        ORDER BY mid, rid
    ), counted AS (
        INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt)
        SELECT {ids.UUID7_SQL}, mid, status, now(), '{DUPLICATE_EVENT}',
               provider || ' delivered it too: an attempt whose outcome was unknown reached the person', provider, attempts
        FROM firsts
        RETURNING message_id
    )
    SELECT f.channel FROM firsts f JOIN counted c ON c.message_id = f.mid
"""  # noqa: S608 - our own constants


def receipts_count_duplicates(*, receipt_ids: Sequence[uuid.UUID]) -> int:
    """Counts the messages these reports show delivered twice (once each, ever); returns how many."""
    if not receipt_ids:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(DUPLICATES, {"ids": list(receipt_ids)})
        channels = [row[0] for row in cursor.fetchall()]
    metrics.count(metrics.DUPLICATE_SENDS, ((channel,) for channel in channels))
    return len(channels)
