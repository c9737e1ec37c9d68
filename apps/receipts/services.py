"""Provider receipts: authenticate a push, store each final status once, match it to its message and
move the message forward (`sent` → `delivered` | `undelivered`, never backwards).

One pass per batch: one INSERT … ON CONFLICT DO NOTHING for the reports, one query to match them,
one conditional UPDATE of the messages. A replayed report inserts nothing and so changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.db import connection, transaction
from django.db.models import Q
from redis.exceptions import RedisError

from apps.dispatch.delivery import record_events, yield_to_critical
from apps.dispatch.models import Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from apps.dispatch.providers.base import ProviderAdapter, Receipt
from messaging_center import ids, metrics
from messaging_center.broker import broker_client, push_task
from messaging_center.db import bound_cursor, json_rows
from messaging_center.group_commit import GroupCommit
from messaging_center.ttl_cache import TtlCache

logger = logging.getLogger(__name__)

# Their pushes carry no signature: the secret `receipt_token` in the push URL is the only proof.
UNSIGNED_KINDS = frozenset({"aliyun", "tencent"})
TOKEN_SETTING = "receipt_token"  # noqa: S105 - the name of a setting
# Statuses a receipt may move a message out of: `sent`, and `retry_wait`/`expired` too: an attempt
# whose outcome was unknown (a timeout) waits in retry_wait, or expires there, and a report from the
# provider it went to proves the provider took it after all.
APPLICABLE_FROM = ("sent", "retry_wait", "expired")
# A message still being sent (or not yet sent) keeps its receipts unmatched until it is `sent`.
NOT_YET_SENT = frozenset({"scheduled", "queued", "sending"})
REMATCH_WINDOW = dt.timedelta(days=1)


@dataclass(frozen=True)
class ReceiptSource:
    provider: Provider
    adapter: ProviderAdapter


# Provider rows (with decrypted settings) per push URL: a status push costs no query or decryption
# for them. A provider saved in this process clears it (apps.dispatch.apps); others within 5 s.
SOURCES: TtlCache[list[tuple[Provider, dict[str, str]]]] = TtlCache(seconds=5)


def _candidates(provider_ref: str) -> list[tuple[Provider, dict[str, str]]]:
    rows = Provider.objects.filter(Q(name=provider_ref) | Q(kind=provider_ref)).order_by("-enabled", "id")
    return [(provider, provider.settings) for provider in rows if provider.kind in ADAPTERS]


def receipt_source_authenticate(
    *, provider_ref: str, token: str | None, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> ReceiptSource | None:
    """The provider row that sent this push, or None when no candidate vouches for it.

    `provider_ref` is a kind or a row name; several rows of one kind may exist (two Aliyun accounts),
    so each candidate's own token and signature check decides."""
    for provider, settings in SOURCES.get_or_load(provider_ref, lambda: _candidates(provider_ref)):
        expected = settings.get(TOKEN_SETTING, "")
        if expected:
            if not token or not hmac.compare_digest(expected.encode(), token.encode()):
                continue
        elif provider.kind in UNSIGNED_KINDS:
            continue  # an unsigned push to a provider without a token is never trusted
        adapter = adapter_class(provider.kind)(settings)
        if adapter.verify_receipt_signature(method=method, url=url, headers=headers, body=body):
            return ReceiptSource(provider, adapter)
    return None


def receipts_parse(*, source: ReceiptSource, url: str, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
    """The adapter's parse; raises ReceiptFormatError. Our id travels in Twilio's StatusCallback query."""
    receipts = source.adapter.parse_receipt(headers=headers, body=body)
    carried = dict(parse_qsl(urlsplit(url).query)).get("message_id")
    if carried:
        receipts = [
            r if r.message_id else Receipt(r.provider, r.provider_message_id, carried, r.to, r.status, r.code, r.detail, r.at)
            for r in receipts
        ]
    return receipts


# A report names the number it is about; one provider id may cover several numbers (an Aliyun
# SendBatchSms call has one BizId for up to 100 of them), and then the number decides which message
# it is: the message of that provider id with the report's number (one probe of msg_provider_id_address,
# which holds the address for this), every message of it when the report names no number, and the
# provider id's only message when the number is written differently. Not one OR in the join: that
# read all the batch's messages per report and probed the index once more for each (measured: the
# receipts of Aliyun batches kept one database core busy while 1,400 SMS/s were delivered). Each
# probe is a LATERAL: a plain join let the planner, with statistics from before a storm of sends
# (hardly a message with a provider id yet), hash-join a full scan of that partial index instead.
# `OFFSET 0` keeps each LATERAL one: a simple one is pulled up into a plain join, and the planner
# then chose those hash joins all the same (seen in EXPLAIN and in pg_stat_user_indexes).
PAIRS = """
    exact AS (
        SELECT r.id AS rid, m.id AS mid FROM r CROSS JOIN LATERAL (
            -- `<> ''` on m as well: the index is partial, and the join alone does not tell the planner so
            SELECT m.id FROM dispatch_message m
            WHERE m.provider = r.provider AND m.provider_message_id = r.provider_message_id AND m.address = r."to"
              AND m.provider_message_id <> ''
            OFFSET 0
        ) m
        WHERE r.provider_message_id <> '' AND r."to" <> ''
    ), pairs AS (
        SELECT rid, mid FROM exact
        UNION ALL
        SELECT r.id, m.id FROM r CROSS JOIN LATERAL (
            SELECT m.id FROM dispatch_message m
            WHERE m.provider = r.provider AND m.provider_message_id = r.provider_message_id AND m.provider_message_id <> ''
            OFFSET 0
        ) m
        WHERE r.provider_message_id <> '' AND r."to" = ''
        UNION ALL
        SELECT r.id, sole.ids[1] FROM r CROSS JOIN LATERAL (
            SELECT array_agg(first_two.id) AS ids FROM (
                SELECT m.id FROM dispatch_message m
                WHERE m.provider = r.provider AND m.provider_message_id = r.provider_message_id
                  AND m.provider_message_id <> '' LIMIT 2
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


def _receipt_rows(provider: Provider, receipts: Sequence[Receipt], source: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for receipt in receipts:
        ref = ids.decode("msg", receipt.message_id) if receipt.message_id else None
        provider_message_id = (receipt.provider_message_id or "")[:128]
        if not provider_message_id and ref is None:
            continue  # nothing to match it by
        rows.append(
            (
                ids.uuid7(),
                provider.name,
                provider.kind,
                source,
                provider_message_id,
                ref,
                (receipt.to or "")[:255],
                receipt.status,
                receipt.code[:64],
                receipt.detail,
                receipt.at,
            )
        )
    return rows


RECEIPT_ROW = ("id", "provider", "kind", "source", "pid", "ref", "to", "status", "code", "detail", "at")


def _insert_receipts(rows: Sequence[tuple[Any, ...]]) -> set[uuid.UUID]:
    """One INSERT for any number of reports; replays are dropped by the unique constraints."""
    if not rows:
        return set()
    with bound_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO receipts_providerreceipt (id, provider, kind, source, provider_message_id, message_ref, "to", status,
                                                  code, detail, reported_at, received_at)
            SELECT r.*, now()
            FROM json_to_recordset(%s::json) AS r(id uuid, provider text, kind text, source text, pid text, ref uuid,
                                                  "to" text, status text, code text, detail text, at timestamptz)
            ON CONFLICT DO NOTHING
            RETURNING id
            """,
            [json_rows(dict(zip(RECEIPT_ROW, row, strict=True)) for row in rows)],
        )
        new = {row[0] for row in cursor.fetchall()}
    metrics.count(metrics.RECEIPTS_RECEIVED, ((row[1], row[3]) for row in rows if row[0] in new))
    return new


def receipts_store(*, provider: Provider, receipts: Sequence[Receipt], source: str) -> list[uuid.UUID]:
    """Stores new reports (replays are dropped by the unique constraints); returns their ids."""
    rows = _receipt_rows(provider, receipts, source)
    new = _insert_receipts(rows)
    return [row[0] for row in rows if row[0] in new]


def _store_pushed_group(pushes: Sequence[list[tuple[Any, ...]]]) -> list[int]:
    """The group commit's write: every waiting push's reports in one INSERT (autocommit: the view
    runs outside a transaction), then their ids queued for the receipts worker in one Redis call."""
    new = _insert_receipts([row for rows in pushes for row in rows])
    receipts_match_soon([row[0] for rows in pushes for row in rows if row[0] in new])
    return [sum(1 for row in rows if row[0] in new) for rows in pushes]


PUSHED = GroupCommit(_store_pushed_group)


def receipts_store_pushed(*, provider: Provider, receipts: Sequence[Receipt]) -> int:
    """A pushed report: stored (committed) when this returns, with the reports other threads of
    this process are storing at the same moment; applied by the receipts worker in batches.
    Returns how many were new."""
    rows = _receipt_rows(provider, receipts, "push")
    return PUSHED.submit(rows) if rows else 0


def receipts_record(*, provider: Provider, receipts: Sequence[Receipt], source: str) -> list[Applied]:
    """Stores new reports and applies them at once (polling, which runs in a worker anyway)."""
    with transaction.atomic():
        return receipts_match(receipt_ids=receipts_store(provider=provider, receipts=receipts, source=source))


# Pushed reports are stored by the web process and applied in batches by the receipts worker: a
# report costs the web one INSERT, and a storm of them (Twilio sends one per message) a few
# statements per batch instead of ten per report. Their ids wait in a Redis set; the first report
# of a quiet spell queues one `receipts.match_pending` task. Should Redis lose the set, the rows are
# still unmatched in the database and the re-match beat job applies them.
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


def receipts_match_pending() -> int:
    """The receipts worker's side: applies every pending pushed report, a batch at a time."""
    client = broker_client()
    applied = 0
    while True:
        # Applying reports is background work: like a bulk chunk, a batch waits for codes in flight.
        yield_to_critical()
        batch = client.spop(PENDING_KEY, MATCH_BATCH)
        if not batch:
            # A push that adds ids after this point finds no schedule mark and queues a new task;
            # one that added them just before is caught by the second look.
            client.delete(SCHEDULED_KEY)
            if not client.scard(PENDING_KEY):
                return applied
            continue
        applied += len(receipts_match(receipt_ids=[uuid.UUID(i.decode() if isinstance(i, bytes) else i) for i in batch]))


def receipts_match(*, receipt_ids: Sequence[uuid.UUID]) -> list[Applied]:
    """Matches unmatched receipts to their messages and moves those messages forward.

    A receipt whose message is not `sent` yet (the push beat the worker's finish) stays unmatched;
    the sent hook or the re-match job applies it later."""
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
            ), {PAIRS}
            SELECT pairs.rid, pairs.mid, m.status, r.status, r.code, r.detail, r.reported_at, r.provider
            FROM pairs JOIN dispatch_message m ON m.id = pairs.mid JOIN r ON r.id = pairs.rid
            ORDER BY r.reported_at, r.id
            """,  # noqa: S608 - PAIRS is a constant
            {"ids": list(receipt_ids)},
        )
        pairs = cursor.fetchall()
        best: dict[uuid.UUID, tuple[str, str, str, dt.datetime, str]] = {}
        matched: list[tuple[uuid.UUID, uuid.UUID]] = []
        for rid, mid, message_status, status, code, detail, at, provider in pairs:
            if message_status in NOT_YET_SENT:
                continue
            matched.append((rid, mid))
            # Delivered wins over undelivered (a carrier may report a failed try, then success).
            if mid not in best or (status == "delivered" and best[mid][0] != "delivered"):
                best[mid] = (status, code, detail, at, provider)
        if matched:
            cursor.execute(
                """
                UPDATE receipts_providerreceipt AS r SET message_id = c.mid, matched_at = now()
                FROM json_to_recordset(%(pairs)s::json) AS c(rid uuid, mid uuid)
                -- `= ANY` too: with statistics from when the table was small, the join alone was
                -- planned as a sequential scan of every receipt.
                WHERE r.id = c.rid AND r.id = ANY(%(rids)s)
                """,
                {"rids": [rid for rid, _ in matched], "pairs": json_rows({"rid": rid, "mid": mid} for rid, mid in matched)},
            )
        applied = _apply(cursor, best)
    return applied


def _apply(cursor: Any, best: Mapping[uuid.UUID, tuple[str, str, str, dt.datetime, str]]) -> list[Applied]:
    if not best:
        return []
    mids = list(best)
    cursor.execute(
        """
        UPDATE dispatch_message AS m
        SET status = c.status,
            code = CASE WHEN c.status = 'delivered' THEN '' ELSE c.code END,
            detail = CASE WHEN c.status = 'delivered' THEN '' ELSE c.detail END,
            sent_at = COALESCE(m.sent_at, LEAST(c.at, now())),
            -- The provider's clock, unless it says before we sent (reports often have whole seconds):
            -- then the moment the report reached us is the better bound.
            delivered_at = CASE WHEN c.status <> 'delivered' THEN m.delivered_at
                                WHEN m.sent_at IS NULL OR c.at > m.sent_at THEN LEAST(c.at, now())
                                ELSE now() END,
            lease_until = NULL, needs_reconcile = FALSE
        FROM json_to_recordset(%s::json) AS c(id uuid, status text, code text, detail text, at timestamptz)
        WHERE m.id = c.id AND m.id = ANY(%s)
          AND (m.status = ANY(%s) OR (m.status = 'undelivered' AND c.status = 'delivered'))
        RETURNING m.id, m.status, m.channel, m.provider, m.sent_at, m.delivered_at
        """,
        [
            json_rows(
                {"id": m, "status": best[m][0], "code": best[m][1][:64], "detail": best[m][2], "at": best[m][3]} for m in mids
            ),
            mids,
            list(APPLICABLE_FROM),
        ],
    )
    updated = cursor.fetchall()
    events = []
    for mid, status, channel, provider, sent_at, delivered_at in updated:
        _, code, detail, _, _ = best[mid]
        explanation = f"{provider} reported {status}" + (f" ({code}{': ' + detail if detail else ''})" if code else "")
        events.append((mid, status, code[:64], explanation, provider, None))
        if status == "delivered" and sent_at and delivered_at:
            metrics.RECEIPT_LATENCY.labels(channel, provider).observe((delivered_at - sent_at).total_seconds())
    metrics.count(metrics.MESSAGES_DELIVERED, ((row[2], row[3]) for row in updated if row[1] == "delivered"))
    metrics.count(metrics.MESSAGES_UNDELIVERED, ((row[2], row[3]) for row in updated if row[1] != "delivered"))
    record_events(events)
    applied = [Applied(row[0], row[1]) for row in updated]
    from apps.receipts import callbacks

    for status in ("delivered", "undelivered"):
        callbacks.callbacks_enqueue(message_ids=[a.message_id for a in applied if a.status == status], status=status)
    from apps.receipts import failover

    failover.failover_on_undelivered(message_ids=[a.message_id for a in applied if a.status == "undelivered"])
    return applied


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


def receipts_rematch(*, batch: int = 1000) -> int:
    """Beat job: unmatched receipts of the last day, in case their message became `sent` since."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id FROM receipts_providerreceipt
            WHERE matched_at IS NULL AND received_at > now() - %s ORDER BY received_at DESC LIMIT %s
            """,
            [REMATCH_WINDOW, batch],
        )
        receipt_ids = [row[0] for row in cursor.fetchall()]
    return len(receipts_match(receipt_ids=receipt_ids))
