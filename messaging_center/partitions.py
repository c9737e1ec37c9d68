"""The big tables as PostgreSQL range-partitioned tables, one partition per UTC day.

Key: the time-ordered UUIDv7 ids, not a timestamp column. A message's partition is the day of its
id (its creation), and its events and status callbacks are partitioned by their `message_id` with the
same bounds, so everything of one message sits in the same day's partitions and leaves with it:
- the primary key stays `id` for messages and receipts (the key is the id), and by-id lookups prune
  to one partition without a second column;
- every existing query bounded by creation time already filters on the id (`id >= uuid7_floor(…)`),
  so search windows prune partitions with no new predicate;
- a unique constraint must hold the key: callbacks' (message_id, status) does. Receipts' replay
  guards (provider, provider id, number, status) cannot, so each receipt partition has them as its own
  unique indexes (`ON CONFLICT DO NOTHING` without a target checks them), which stops a replay within
  the day a report was first received; a later replay only repeats a forward-only, conditional move.

Receipts and callback attempts are partitioned by their own ids (when they were received / made):
they leave when the message or callback they belong to has left (apps/dispatch/retention.py).

Why not django-postgres-extra's partitioning manager: its strategies partition by a date column,
while our key is the UUIDv7 id (no second time column in every index); it needs its own database
engine; it cannot convert an existing table with data; and retention here is per account, which
partition-at-a-time deletion by age alone cannot express. What is left is small: create the next
days' partitions, list them with their bounds, swap one for a rewritten copy, drop one.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from messaging_center import ids

Cursor = psycopg.Cursor[Any]
DAY = dt.timedelta(days=1)
AHEAD_DAYS = 7  # partitions made ahead; the maintenance job runs hourly, migrate makes them too


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    # Unique indexes that cannot live on the parent (they lack the key): made on every partition.
    # `{partition}` is the partition's name.
    own_unique: tuple[str, ...] = ()


MESSAGES = Table("dispatch_message", "id")
EVENTS = Table("dispatch_messageevent", "message_id")
CALLBACKS = Table("receipts_statuscallback", "message_id")
RECEIPTS = Table(
    "receipts_providerreceipt",
    "id",
    own_unique=(
        'CREATE UNIQUE INDEX IF NOT EXISTS {partition}_pid_status ON {partition} (provider, provider_message_id, "to", status) '
        "WHERE provider_message_id <> ''",
        "CREATE UNIQUE INDEX IF NOT EXISTS {partition}_ref_status ON {partition} (provider, message_ref, status) "
        "WHERE provider_message_id = ''",
    ),
)
ATTEMPTS = Table("receipts_callbackattempt", "message_id")
TABLES = (MESSAGES, EVENTS, CALLBACKS, RECEIPTS, ATTEMPTS)
# Receipts' unique constraints as Django made them on the plain table: not on the partitioned parent
# (Table.own_unique stands in), made again by the reverse migration.
PLAIN_ONLY = {
    RECEIPTS.name: {
        "receipt_provider_id_status": "CREATE UNIQUE INDEX receipt_provider_id_status ON receipts_providerreceipt "
        "(provider, provider_message_id, \"to\", status) WHERE provider_message_id <> ''",
        "receipt_provider_ref_status": "CREATE UNIQUE INDEX receipt_provider_ref_status ON receipts_providerreceipt "
        "(provider, message_ref, status) WHERE provider_message_id = ''",
    }
}


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    lower: uuid.UUID | None  # None: MINVALUE (the table that held everything before the upgrade)
    upper: uuid.UUID

    @property
    def upper_time(self) -> dt.datetime:
        return uuid7_time(self.upper)


def uuid7_time(value: uuid.UUID) -> dt.datetime:
    return dt.datetime.fromtimestamp((value.int >> 80) / 1000, dt.UTC)


def day_start(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_bound(day: dt.datetime) -> uuid.UUID:
    return ids.uuid7_floor(day_start(day))


def partition_name(table: str, day: dt.datetime) -> str:
    return f"{table}_p{day:%Y%m%d}"


_BOUND = re.compile(r"FROM \((?:MINVALUE|'([0-9a-f-]{36})')\) TO \('([0-9a-f-]{36})'\)")


def partitions(cursor: Cursor, table: str) -> list[Partition]:
    """The table's partitions, oldest first."""
    cursor.execute(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %s::regclass
        """,
        [table],
    )
    found = []
    for name, bound in cursor.fetchall():
        match = _BOUND.search(bound)
        if match is None:
            continue
        lower, upper = match.groups()
        found.append(Partition(table, name, uuid.UUID(lower) if lower else None, uuid.UUID(upper)))
    return sorted(found, key=lambda part: part.upper)


def is_partitioned(cursor: Cursor, table: str) -> bool:
    cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass", [table])
    row = cursor.fetchone()
    return bool(row and row[0])


def create_partition(cursor: Cursor, table: Table, day: dt.datetime) -> str:
    name = partition_name(table.name, day)
    cursor.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(name),
            sql.Identifier(table.name),
            sql.Literal(str(day_bound(day))),
            sql.Literal(str(day_bound(day + DAY))),
        )
    )
    for statement in table.own_unique:
        cursor.execute(statement.format(partition=name))
    return name


def ensure_partitions(
    cursor: Cursor, *, now: dt.datetime, first_day: dt.datetime | None = None, ahead: int = AHEAD_DAYS
) -> list[str]:
    """Daily partitions of every partitioned table from `first_day` (default: today) to `ahead` days
    after today, where no partition covers that day yet. Returns the names made."""
    made = []
    start = day_start(first_day or now)
    end = day_start(now) + ahead * DAY
    for table in TABLES:
        if not is_partitioned(cursor, table.name):
            continue
        existing = [(part.lower.int if part.lower else -1, part.upper.int) for part in partitions(cursor, table.name)]
        day = start
        while day <= end:
            low, high = day_bound(day).int, day_bound(day + DAY).int
            if not any(lo < high and low < hi for lo, hi in existing):
                made.append(create_partition(cursor, table, day))
            day += DAY
    return made


# --- converting a plain table into a partitioned one (migration) ---------------------------------


@dataclass(frozen=True)
class Index:
    name: str
    definition: str  # CREATE [UNIQUE] INDEX …, or ALTER TABLE … ADD CONSTRAINT … for a constraint's index
    primary: bool
    unique: bool
    columns: tuple[str, ...]


def _indexes(cursor: Cursor, table: str) -> list[Index]:
    cursor.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique,
               ARRAY(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k),
               con.conname, pg_get_constraintdef(con.oid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
        WHERE i.indrelid = %s::regclass ORDER BY c.relname
        """,
        [table],
    )
    found = []
    for name, definition, primary, unique, columns, constraint, constraint_definition in cursor.fetchall():
        if constraint and not primary:
            head = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(constraint))
            definition = head.as_string(cursor) + constraint_definition
        found.append(Index(name, definition, primary, unique, tuple(columns)))
    return found


def _triggers(cursor: Cursor, table: str) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [table]
    )
    return list(cursor.fetchall())


def _foreign_keys(cursor: Cursor, table: str) -> list[str]:
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'f' AND (conrelid = %s::regclass OR confrelid = %s::regclass)",
        [table, table],
    )
    return [row[0] for row in cursor.fetchall()]


def _rename_index(cursor: Cursor, name: str, suffix: str) -> str:
    new = f"{name[: 63 - len(suffix)]}{suffix}"
    cursor.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(new)))
    return new


def convert(cursor: Cursor, table: Table, *, now: dt.datetime) -> None:
    """Turns the plain table into a partitioned one in a few catalog steps, keeping every row: the old
    table becomes the partition of everything up to the end of today (`<table>_legacy`, its indexes
    attached as they are, no copy), and daily partitions follow. Indexes, constraints and triggers keep
    their names on the parent. On a large table the one slow step is ATTACH's check that every row
    fits the bound (a scan, under lock); README "Upgrading" says how to validate it beforehand."""
    if is_partitioned(cursor, table.name):
        return
    if fks := _foreign_keys(cursor, table.name):
        raise RuntimeError(f"{table.name} has foreign keys {fks}: drop them before partitioning")
    execute = cursor.execute
    indexes = _indexes(cursor, table.name)
    triggers = _triggers(cursor, table.name)
    for name, _ in triggers:
        execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), sql.Identifier(table.name)))
    execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table.name)))
    has_rows = bool((cursor.fetchone() or (False,))[0])
    legacy = f"{table.name}_legacy"
    execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(table.name), sql.Identifier(legacy)))
    for index in indexes:
        _rename_index(cursor, index.name, "_legacy")
    # A unique index on (id, key) built beforehand (README, Upgrading) becomes the old table's primary key.
    new_key = ("id", table.key)
    prebuilt = next((i for i in indexes if table.key != "id" and i.unique and not i.primary and i.columns == new_key), None)
    execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) "
            "PARTITION BY RANGE ({})"
        ).format(sql.Identifier(table.name), sql.Identifier(legacy), sql.Identifier(table.key))
    )
    # A check of the old table's range made beforehand (README, Upgrading) is the old partition's, not the parent's.
    execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS legacy_bound").format(sql.Identifier(table.name)))
    for index in indexes:
        if index.primary:
            key = ["id"] if table.key == "id" else ["id", table.key]
            execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                    sql.Identifier(table.name), sql.Identifier(index.name), sql.SQL(", ").join(map(sql.Identifier, key))
                )
            )
        elif index is prebuilt or (index.unique and table.key not in index.columns):
            continue  # made per partition (Table.own_unique); the legacy partition keeps its own
        else:
            execute(index.definition)  # its own name, on the new parent (which has the table's name)
    if has_rows:
        # The parent's key is (id, message_id) where the partition key is not the id: ATTACH builds
        # that index on the old table in place of its primary key on (id).
        for index in indexes:
            if index.primary and table.key != "id":
                old_key = sql.Identifier(f"{index.name[:56]}_legacy")
                execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(legacy), old_key))
                if prebuilt is not None:
                    execute(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
                            sql.Identifier(legacy), old_key, sql.Identifier(f"{prebuilt.name[:56]}_legacy")
                        )
                    )
        execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM (MINVALUE) TO ({})").format(
                sql.Identifier(table.name), sql.Identifier(legacy), sql.Literal(str(day_bound(now + DAY)))
            )
        )
        execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS legacy_bound").format(sql.Identifier(legacy)))
        first_day = day_start(now) + DAY
    else:
        execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(legacy)))
        first_day = day_start(now) - DAY
    for _, definition in triggers:
        execute(definition)
    ensure_partitions(cursor, now=now, first_day=first_day)


def unconvert(cursor: Cursor, table: Table) -> None:
    """The reverse migration: one plain table with every row and the same index names again."""
    if not is_partitioned(cursor, table.name):
        return
    execute = cursor.execute
    indexes = _indexes(cursor, table.name)
    triggers = _triggers(cursor, table.name)
    partitioned = f"{table.name}_partitioned"
    for name, _ in triggers:
        execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), sql.Identifier(table.name)))
    execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(table.name), sql.Identifier(partitioned)))
    for index in indexes:
        _rename_index(cursor, index.name, "_part")
    execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)").format(
            sql.Identifier(table.name), sql.Identifier(partitioned)
        )
    )
    execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(sql.Identifier(table.name), sql.Identifier(partitioned)))
    for index in indexes:
        if index.primary:
            execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (id)").format(
                    sql.Identifier(table.name), sql.Identifier(index.name)
                )
            )
        else:
            execute(index.definition.replace(" ON ONLY ", " ON "))
    execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(partitioned)))
    for definition in PLAIN_ONLY.get(table.name, {}).values():
        execute(definition)
    for _, definition in triggers:
        execute(definition)


def drop_partitions(cursor: Cursor, names: Iterable[str]) -> None:
    for name in names:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
