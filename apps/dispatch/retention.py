"""Retention: each account's messages leave `retention_days` after they were made, by whole partitions.

Messages are partitioned by day of creation, and their events, status callbacks and callback attempts
by their message's id with the same bounds (messaging_center/partitions.py), so one day's rows of all
four tables are one *group*. A group is looked at once its day is older than the shortest retention
of any account, and only when one of the accounts with rows in it has passed its retention there:
- every account in it past its retention and nothing in flight → the group's partitions are dropped;
- otherwise the group is *rewritten*: the rows still kept (other accounts' rows, and any message in
  flight — scheduled, queued, sending, retry_wait, or `sent` inside its receipt window — with its
  events, callbacks and attempts) are copied into fresh tables that replace the partitions, and the
  old ones are dropped. The cost is the kept rows, once per account that leaves that day.
No row is deleted one by one, and rollups (counted when messages change state) keep the history.
Provider receipts are partitioned by when they came; a receipt partition near a rewritten or dropped
group keeps only receipts whose message is still there (and unmatched ones younger than a week).

Each swap is one short transaction: the copy runs with the old partitions locked against writes
(reads go on); the parent is locked only for detach + attach, with a lock timeout so that a busy
table makes the job try again at its next run instead of queueing every query behind it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql

from apps.dispatch.models import ACTIVE_STATUSES, HOUR_ROWS_KEPT, MINUTE_ROWS_KEPT, Grain, Status
from messaging_center import ids, partitions
from messaging_center.partitions import DAY, Partition

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
IN_FLIGHT = sorted({Status.SCHEDULED, *ACTIVE_STATUSES})
UNMATCHED_RECEIPTS_KEPT = dt.timedelta(days=7)
RECEIPTS_LATE_BY = 3 * DAY  # receipts of a day's messages arrive within this (later ones go too)
GROUP = (partitions.MESSAGES, partitions.EVENTS, partitions.CALLBACKS, partitions.ATTEMPTS)
LOCK_TIMEOUT = "5s"
PURGE_BATCH = 5000


@dataclass
class Report:
    dropped: list[str] = field(default_factory=list)
    rewritten: dict[str, int] = field(default_factory=dict)  # partition → rows kept
    made: list[str] = field(default_factory=list)
    purged: dict[str, int] = field(default_factory=dict)


def _receipt_cutoff(now: dt.datetime) -> dt.datetime:
    """A `sent` message is in flight while its receipt may still come (polled or pushed)."""
    return now - dt.timedelta(seconds=max(settings.RECEIPT_POLL_WINDOW_SECONDS, settings.RECEIPT_TIMEOUT_SECONDS))


# In flight: scheduled, queued, sending, retry_wait, or sent with its receipt still to come. Written so
# that with `account_id = ANY(…)` it reads the (account_id, status, id) index.
_IN_FLIGHT = sql.SQL("(status = ANY(%(in_flight_or_sent)s) AND (status <> 'sent' OR sent_at > %(receipt_cutoff)s))")
_KEEP = sql.SQL("(NOT (account_id = ANY(%(expired)s)) OR {})").format(_IN_FLIGHT)


def run_retention(*, now: dt.datetime | None = None) -> Report:
    now = now or timezone.now()
    report = Report()
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own: the partition helpers compose SQL with psycopg.sql
        with transaction.atomic():
            report.made = partitions.ensure_partitions(cursor, now=now)
        if not partitions.is_partitioned(cursor, partitions.MESSAGES.name):
            return report
        cursor.execute("SELECT id, retention_days FROM accounts_account")
        retention = dict(cursor.fetchall())
        shortest = min(retention.values(), default=DEFAULT_RETENTION_DAYS)
        touched: list[Partition] = []
        for part in partitions.partitions(cursor, partitions.MESSAGES.name):
            if part.upper_time > now - shortest * DAY:
                break
            present = _accounts_present(cursor, part.name)
            expired = [a for a in present if part.upper_time <= now - retention.get(a, DEFAULT_RETENTION_DAYS) * DAY]
            if not expired:
                continue
            params = {
                "expired": expired,
                "kept_accounts": [a for a in present if a not in expired],
                "in_flight_or_sent": [*IN_FLIGHT, Status.SENT],
                "receipt_cutoff": _receipt_cutoff(now),
            }
            _retire_group(cursor, part, params, report)
            touched.append(part)
        if touched:
            _retire_receipts(cursor, touched, now, report)
        report.purged.update(_purge_small_tables(cursor, now, retention))
        report.purged["dispatch_rollup"] = _prune_rollups(cursor, now, list(retention))
    if report.dropped or report.rewritten:
        logger.info("retention: dropped %s; rewritten %s", report.dropped, report.rewritten)
    return report


def _accounts_present(cursor: Any, partition: str) -> list[uuid.UUID]:
    """The accounts with rows in the partition: a loose index scan, one probe of (account_id, id) per account."""
    cursor.execute(
        sql.SQL(
            """
            WITH RECURSIVE a AS (
                (SELECT account_id FROM {p} ORDER BY account_id LIMIT 1)
                UNION ALL
                SELECT (SELECT account_id FROM {p} WHERE account_id > a.account_id ORDER BY account_id LIMIT 1)
                FROM a WHERE a.account_id IS NOT NULL
            )
            SELECT account_id FROM a WHERE account_id IS NOT NULL
            """
        ).format(p=sql.Identifier(partition))
    )
    return [row[0] for row in cursor.fetchall()]


def _same_range(cursor: Any, table: str, part: Partition) -> Partition | None:
    return next((p for p in partitions.partitions(cursor, table) if p.upper == part.upper and p.lower == part.lower), None)


def _retire_group(cursor: Any, part: Partition, params: dict[str, Any], report: Report) -> None:
    group = [_same_range(cursor, table.name, part) for table in GROUP]
    with transaction.atomic():
        cursor.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        present = [p for p in group if p is not None]
        cursor.execute(
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.SQL(", ").join(sql.Identifier(p.name) for p in present))
        )
        # Anything kept? Accounts still inside their retention, or messages in flight.
        if not params["kept_accounts"]:
            cursor.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE account_id = ANY(%(expired)s) AND {})").format(
                    sql.Identifier(part.name), _IN_FLIGHT
                ),
                params,
            )
            if not cursor.fetchone()[0]:
                partitions.drop_partitions(cursor, [p.name for p in present])
                report.dropped.extend(p.name for p in present)
                return
        kept_messages = sql.SQL("SELECT id FROM {} WHERE {}").format(sql.Identifier(part.name), _KEEP)
        swaps = []
        for table, old in zip(GROUP, group, strict=True):
            if old is None:
                continue
            keep = _KEEP if table is partitions.MESSAGES else sql.SQL("message_id IN ({})").format(kept_messages)
            swaps.append((table, old, _copy_kept(cursor, table, old, keep, params, report)))
        _swap(cursor, swaps)


def _columns(cursor: Any, table: str) -> sql.Composable:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [table],
    )
    return sql.SQL(", ").join(sql.Identifier(row[0]) for row in cursor.fetchall())


_INDEX_HEAD = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ ")


def _copy_kept(
    cursor: Any, table: partitions.Table, old: Partition, keep: sql.Composable, params: dict[str, Any], report: Report
) -> str:
    """A new table holding the kept rows of `old`, with the parent's indexes and a CHECK of the
    partition's bounds (so that ATTACH neither builds an index nor scans under the parent's lock)."""
    new = f"{old.name[:55]}_kept"
    cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(new)))
    cursor.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)").format(
            sql.Identifier(new), sql.Identifier(table.name)
        )
    )
    columns = _columns(cursor, table.name)
    cursor.execute(
        sql.SQL("INSERT INTO {new} ({columns}) SELECT {columns} FROM {old} WHERE {keep}").format(
            new=sql.Identifier(new), columns=columns, old=sql.Identifier(old.name), keep=keep
        ),
        params,
    )
    report.rewritten[old.name] = cursor.rowcount
    key = sql.Identifier(table.key)
    bound = sql.SQL("{} < {}").format(key, sql.Literal(str(old.upper)))
    if old.lower is not None:
        bound = sql.SQL("{} >= {} AND ").format(key, sql.Literal(str(old.lower))) + bound
    cursor.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL AND {})").format(
            sql.Identifier(new), sql.Identifier(f"{new}_bound"), key, bound
        )
    )
    cursor.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", [table.name])
    for (definition,) in cursor.fetchall():
        cursor.execute(_INDEX_HEAD.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX ON {_quoted(new)} ", definition))
    for statement in table.own_unique:
        cursor.execute(statement.format(partition=new))
    return new


def _quoted(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def _swap(cursor: Any, swaps: Sequence[tuple[partitions.Table, Partition, str]]) -> None:
    for table, old, new in swaps:
        lower = sql.SQL("MINVALUE") if old.lower is None else sql.Literal(str(old.lower))
        cursor.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(table.name), sql.Identifier(old.name)))
        cursor.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(table.name), sql.Identifier(new), lower, sql.Literal(str(old.upper))
            )
        )
        cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(old.name)))
        cursor.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(new), sql.Identifier(old.name)))
        cursor.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(old.name), sql.Identifier(f"{new}_bound"))
        )


def _retire_receipts(cursor: Any, touched: Sequence[Partition], now: dt.datetime, report: Report) -> None:
    """Receipt partitions received while the touched groups' receipts could come keep only receipts
    whose message is still there, and unmatched ones younger than a week."""
    low = min((p.lower for p in touched), key=lambda bound: bound.int if bound else -1)
    high = max(p.upper for p in touched)
    # Receipts of messages outside the touched groups are kept without a look; the others only if their
    # message is still there (a probe pruned to the touched partitions, which were just rewritten).
    keep = sql.SQL(
        "((message_id IS NULL AND received_at > %(unmatched_cutoff)s) "
        "OR message_id >= %(high)s OR (%(low)s::uuid IS NOT NULL AND message_id < %(low)s::uuid) "
        "OR EXISTS (SELECT 1 FROM dispatch_message m WHERE m.id = message_id "
        "AND m.id < %(high)s AND (%(low)s::uuid IS NULL OR m.id >= %(low)s::uuid)))"
    )
    params = {"unmatched_cutoff": now - UNMATCHED_RECEIPTS_KEPT, "low": low, "high": high}
    first = low.int if low else -1
    last = partitions.day_bound(partitions.uuid7_time(high) + RECEIPTS_LATE_BY).int
    for part in partitions.partitions(cursor, partitions.RECEIPTS.name):
        part_low = part.lower.int if part.lower else -1
        if not (part_low < last and first < part.upper.int) or part.upper_time > now:
            continue
        with transaction.atomic():
            cursor.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
            cursor.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(part.name)))
            cursor.execute(
                sql.SQL("SELECT count(*) FILTER (WHERE {}), count(*) FROM {}").format(keep, sql.Identifier(part.name)),
                params,
            )
            kept, total = cursor.fetchone()
            if kept == total:
                continue
            if kept == 0:
                partitions.drop_partitions(cursor, [part.name])
                report.dropped.append(part.name)
                continue
            new = _copy_kept(cursor, partitions.RECEIPTS, part, keep, params, report)
            _swap(cursor, [(partitions.RECEIPTS, part, new)])


def _purge_small_tables(cursor: Any, now: dt.datetime, retention: dict[uuid.UUID, int]) -> dict[str, int]:
    """Verification codes and failover records are small tables: they leave in batches, through their
    time-ordered primary keys (UUIDv7; a failover's key is its original message's id)."""
    shortest = min(retention.values(), default=DEFAULT_RETENTION_DAYS)
    longest = max(retention.values(), default=DEFAULT_RETENTION_DAYS)
    params = {
        "shortest": ids.uuid7_floor(now - shortest * DAY),
        "longest": ids.uuid7_floor(now - longest * DAY),
        "now_ms": int(now.timestamp() * 1000),
        "batch": PURGE_BATCH,
    }
    purged = {}
    for table, statement in (
        (
            "receipts_verification",
            """
            DELETE FROM receipts_verification WHERE id = ANY(ARRAY(
                SELECT v.id FROM receipts_verification v JOIN accounts_account a ON a.id = v.account_id
                WHERE v.id < %(shortest)s
                  AND v.id < (lpad(to_hex(%(now_ms)s - a.retention_days * 86400000::bigint), 12, '0')
                              || '70008000000000000000')::uuid  -- the first UUIDv7 of that instant
                LIMIT %(batch)s))
            """,
        ),
        (
            "receipts_failover",
            "DELETE FROM receipts_failover WHERE original_id = ANY(ARRAY("
            "SELECT original_id FROM receipts_failover WHERE original_id < %(longest)s LIMIT %(batch)s))",
        ),
    ):
        total = 0
        while True:
            with transaction.atomic():
                cursor.execute(statement, params)
                total += cursor.rowcount
            if cursor.rowcount < PURGE_BATCH:
                break
        purged[table] = total
    return purged


def _prune_rollups(cursor: Any, now: dt.datetime, accounts: list[uuid.UUID]) -> int:
    """Minute rows past MINUTE_ROWS_KEPT and hour rows past HOUR_ROWS_KEPT of both rollups (messages and
    provider calls) leave, in batches through the primary key (account, grain, bucket, …); stats read
    older edges at the next coarser grain."""
    total = 0
    for table, account in itertools.product(("dispatch_rollup", "dispatch_attempt_rollup"), accounts):
        for grain, kept in ((Grain.MINUTE, MINUTE_ROWS_KEPT), (Grain.HOUR, HOUR_ROWS_KEPT)):
            while True:
                with transaction.atomic():
                    cursor.execute(
                        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "  # noqa: S608 - our table names
                        "WHERE account_id = %s AND grain = %s AND bucket < %s LIMIT %s))",
                        [account, grain, now - kept, PURGE_BATCH],
                    )
                total += cursor.rowcount
                if cursor.rowcount < PURGE_BATCH:
                    break
    return total
