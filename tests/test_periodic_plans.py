"""Every periodic job's statements, planned by PostgreSQL against tables with history: none may read
a big table whole (a sequential scan, or an index scan without an index condition), and each job's
read of its due rows goes through the index made for it (docs/architecture.md, Periodic jobs).

The statements are the jobs' own (module-level SQL and query builders, with the parameters the jobs
pass), planned on ~120,000 messages spread over 30 days with realistic statuses, their events,
receipts, status callbacks and attempts, verification codes and idempotency records, after ANALYZE."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from apps.dispatch import transitions
from apps.dispatch.leases import queued_lease
from apps.dispatch.models import Status
from apps.dispatch.outbox import relay_query
from apps.dispatch.routing import quality
from apps.dispatch.services import PURGE_IDEMPOTENCY
from apps.receipts import matching, polling
from apps.receipts.callbacks import callbacks_due_query
from apps.receipts.failover import candidates_query
from messaging_center import partitions
from messaging_center.db import bound_cursor
from tests.receipts.conftest import make_provider

pytestmark = pytest.mark.django_db

MESSAGES = 120_000
BIG_TABLES = {
    "dispatch_message",
    "dispatch_messageevent",
    "receipts_providerreceipt",
    "receipts_statuscallback",
    "receipts_callbackattempt",
    "receipts_verification",
    "dispatch_idempotencyrecord",
    "receipts_failover",
    "dispatch_rollup",
}
PROVIDERS = ("test-aliyun", "test-tencent", "test-wecom")

# A UUIDv7 of the timestamp `ts` (random bits from the row number), as the application makes them.
_UUID7 = (
    "(lpad(to_hex((extract(epoch FROM {ts}) * 1000)::bigint), 12, '0') || '7' || substr(md5(({n})::text), 1, 3)"
    " || '8' || substr(md5(({n})::text), 4, 15))::uuid"
)

SEED = f"""
CREATE TEMP TABLE seed ON COMMIT DROP AS
SELECT i, now() - make_interval(secs => i * 30 * 86400.0 / {MESSAGES}) AS created,
       CASE WHEN i <= 1200 THEN (ARRAY['queued', 'sending', 'retry_wait', 'scheduled'])[i % 4 + 1]
            ELSE (ARRAY['delivered', 'delivered', 'delivered', 'delivered', 'delivered', 'delivered', 'delivered',
                        'delivered', 'delivered', 'delivered', 'delivered', 'delivered', 'sent', 'sent', 'sent',
                        'undelivered', 'failed', 'expired', 'suppressed', 'canceled'])[i % 20 + 1] END AS status,
       CASE WHEN i % 10 = 3 THEN 'verification' ELSE 'notification' END AS category,
       (ARRAY{list(PROVIDERS)!r})[(i / 7) % 3 + 1] AS provider
FROM generate_series(1, {MESSAGES}) AS i;

INSERT INTO dispatch_message (id, account_id, batch_id, template_code, channel, category, priority, address, user_id,
    params, title, content, segments, status, code, detail, provider, provider_message_id, attempts, lease_until,
    created_at, scheduled_at, sent_at, delivered_at, expires_at, needs_reconcile)
SELECT {_UUID7.format(ts="created", n="i")}, %(account)s, md5((i / 100)::text)::uuid, 'notice', 'sms', category,
       'normal', '+86139' || lpad(i::text, 8, '0'), '', '{{}}', '', 'Your parcel ' || i, 1, status, '', '',
       CASE WHEN status IN ('scheduled', 'queued', 'suppressed', 'canceled') THEN '' ELSE provider END,
       CASE WHEN status IN ('scheduled', 'queued', 'suppressed', 'canceled') THEN '' ELSE 'biz-' || i END,
       CASE WHEN status IN ('scheduled', 'queued', 'suppressed', 'canceled') THEN 0 ELSE 1 END,
       CASE WHEN status IN ('queued', 'sending', 'retry_wait') THEN now() + make_interval(secs => i % 120) END,
       created, CASE WHEN status = 'scheduled' THEN now() + make_interval(mins => i % 600) END,
       CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN created + interval '1 second' END,
       CASE WHEN status = 'delivered' THEN created + interval '5 seconds' END,
       CASE WHEN category = 'verification' THEN created + interval '5 minutes'
            ELSE created + interval '72 hours' + make_interval(mins => CASE WHEN status = 'scheduled' THEN i % 600 ELSE 0 END)
       END,
       FALSE
FROM seed;

INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt, started_at)
SELECT {_UUID7.format(ts="created + interval '1 second'", n="i + 1000000")}, m.id, 'sent', created, '', '', s.provider, 1, created
FROM seed s JOIN dispatch_message m ON m.provider_message_id = 'biz-' || s.i AND m.provider = s.provider
WHERE s.status NOT IN ('scheduled', 'queued', 'suppressed', 'canceled')
UNION ALL
SELECT {_UUID7.format(ts="created + interval '10 minutes'", n="i + 2000000")}, m.id, 'receipt_timeout', created, '', '',
       s.provider, NULL, NULL
FROM seed s JOIN dispatch_message m ON m.provider_message_id = 'biz-' || s.i AND m.provider = s.provider
WHERE s.status = 'sent';

INSERT INTO receipts_providerreceipt (id, provider, kind, provider_message_id, message_ref, "to", status, code, detail,
    source, reported_at, received_at, message_id, matched_at)
SELECT {_UUID7.format(ts="created + interval '5 seconds'", n="i + 3000000")}, s.provider, 'aliyun', 'biz-' || s.i, NULL,
       '+86139' || lpad(s.i::text, 8, '0'), s.status, '', '', 'push', created, created + interval '5 seconds',
       CASE WHEN s.i % 50 <> 7 THEN m.id END, CASE WHEN s.i % 50 <> 7 THEN created + interval '5 seconds' END
FROM seed s JOIN dispatch_message m ON m.provider_message_id = 'biz-' || s.i AND m.provider = s.provider
WHERE s.status IN ('delivered', 'undelivered');

INSERT INTO receipts_statuscallback (id, account_id, message_id, status, body, state, attempts, next_attempt_at,
    created_at, last_error)
SELECT {_UUID7.format(ts="created + interval '6 seconds'", n="i + 4000000")}, %(account)s, m.id, s.status, '{{}}',
       CASE WHEN s.i < 3000 AND s.i % 10 = 1 THEN 'pending' WHEN s.i % 97 = 0 THEN 'failed' ELSE 'delivered' END, 1,
       CASE WHEN s.i < 3000 AND s.i % 10 = 1 THEN now() + make_interval(secs => s.i % 600 - 300) ELSE created END,
       created, ''
FROM seed s JOIN dispatch_message m ON m.provider_message_id = 'biz-' || s.i AND m.provider = s.provider
WHERE s.status IN ('delivered', 'undelivered');

INSERT INTO receipts_callbackattempt (id, callback_id, message_id, at, url, status_code, error, duration_ms)
SELECT {_UUID7.format(ts="c.created_at", n="row_number() OVER () + 5000000")}, c.id, c.message_id, c.created_at,
       'https://example.com/hook', 200, '', 12
FROM receipts_statuscallback c;

INSERT INTO receipts_verification (id, account_id, address, template_code, message_id, code_hash, state, failed_checks,
    created_at, expires_at, verified_at)
SELECT {_UUID7.format(ts="created", n="i + 6000000")}, %(account)s, '+86139' || lpad(i::text, 8, '0'), 'login_code',
       {_UUID7.format(ts="created", n="i")}, md5(i::text), 'used', 0, created, created + interval '5 minutes', NULL
FROM seed WHERE category = 'verification';

INSERT INTO dispatch_idempotencyrecord (id, account_id, key, body_hash, status_code, response_body, created_at)
SELECT {_UUID7.format(ts="created", n="i + 7000000")}, %(account)s, 'key-' || i, md5(i::text), 202, NULL,
       now() - make_interval(secs => i * 2.0)
FROM seed WHERE i <= 60000;

INSERT INTO receipts_failover (original_id, resend_id, reason, failed_provider, created_at)
SELECT {_UUID7.format(ts="s.created", n="s.i")}, {_UUID7.format(ts="r.created", n="r.i")}, 'no_receipt', s.provider, s.created
FROM seed s JOIN seed r ON r.i = s.i + 1 WHERE s.category = 'verification' AND s.i % 4 = 1;

INSERT INTO dispatch_outbox (id, lane, message_ids, created_at)
SELECT {_UUID7.format(ts="created", n="i + 8000000")}, 'normal', '[]', created FROM seed WHERE i <= 300;
"""  # noqa: S608 - our own constants


@pytest.fixture
def history(api: Any) -> Iterator[None]:
    for kind in ("aliyun", "tencent", "wecom"):
        make_provider(kind)
    with connection.cursor() as cursor:
        now = timezone.now()  # the history's days need their partitions (a database has them from yesterday on)
        partitions.ensure_partitions(cursor.cursor, now=now, first_day=now - dt.timedelta(days=32))
        cursor.execute(SEED.replace("%", "%%").replace("%%(account)s", "%(account)s"), {"account": api.account.id})
        cursor.execute("ANALYZE")
    yield


# The statements the jobs run through messaging_center.db.bound_cursor: prepared, and planned
# generically (plan_cache_mode=force_generic_plan), so they are planned here with their parameters
# bound on the server as well. The rest are bound on the client, as the jobs run them.
BOUND = {transitions.LAPSED_AND_EXPIRED, transitions.EXPIRE, transitions.LAPSED}


# Run through db.generic_plan_cursor: one generic plan per connection, whatever the parameters.
GENERIC = {transitions.LAPSED_AND_EXPIRED, transitions.LAPSED}


def _sql_type(value: Any) -> str:
    """The type psycopg sends a parameter as."""
    if isinstance(value, list):
        return _sql_type(value[0]) + "[]" if value else "text[]"
    types = ((bool, "boolean"), (int, "bigint"), (dt.datetime, "timestamptz"), (dt.timedelta, "interval"), (uuid.UUID, "uuid"))
    return next((name for kind, name in types if isinstance(value, kind)), "text")


def _generic(statement: str, params: dict[str, Any]) -> str:
    """The statement with $1, $2 … (typed as psycopg sends them) for EXPLAIN (GENERIC_PLAN)."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match[1], len(numbers) + 1)}::{_sql_type(params[match[1]])}"

    return re.sub(r"%\((\w+)\)s", number, statement)


def _plan(statement: str | QuerySet[Any, Any], params: Any = None) -> dict[str, Any]:
    if isinstance(statement, QuerySet):
        statement, params = statement.query.sql_with_params()
    if statement in GENERIC:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {_generic(statement, params)}")
            raw = cursor.fetchone()[0]
        return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]  # type: ignore[no-any-return]
    opened = bound_cursor() if statement in BOUND else connection.cursor()
    with opened as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", params)
        raw = cursor.fetchone()[0]
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]  # type: ignore[no-any-return]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


_PARTITION = re.compile(r"^(?P<table>.+)_(?:p\d{8}|legacy)$")


def _table(node: dict[str, Any]) -> str | None:
    """The table a node reads: a partition counts as its partitioned table."""
    name = node.get("Relation Name")
    match = _PARTITION.match(name) if name else None
    return match.group("table") if match else name


def _parent_indexes() -> dict[str, str]:
    """A partition's index → the partitioned table's index it belongs to."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind = 'i'"
        )
        return dict(cursor.fetchall())


def _index(node: dict[str, Any], parents: dict[str, str]) -> str | None:
    name = node.get("Index Name")
    return parents.get(name, name) if name else None


def _summary(plan: dict[str, Any]) -> list[str]:
    return [
        f"{node['Node Type']} {node.get('Index Name') or node.get('Relation Name') or ''}".strip()
        for node in _nodes(plan)
        if "Relation Name" in node or "Index Name" in node
    ]


def _empty_partitions() -> set[str]:
    """Partitions of a few pages at most (the days ahead; the history's first day, which holds minutes
    of it when the suite runs just before midnight UTC): reading one whole costs nothing, and the
    planner rightly does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.relpages < 8")
        return {row[0] for row in cursor.fetchall()}


def _whole_reads(plan: dict[str, Any], empty: set[str]) -> list[str]:
    """Reads of a big table that are not bounded by an index condition."""
    found = []
    for node in _nodes(plan):
        table = _table(node)
        if node["Node Type"] == "Seq Scan" and table in BIG_TABLES and node.get("Relation Name") not in empty:
            found.append(f"Seq Scan on {table}")
        if node["Node Type"] in ("Index Scan", "Index Only Scan") and table in BIG_TABLES and "Index Cond" not in node:
            found.append(f"whole index {node['Index Name']} of {table}")
        if node["Node Type"] == "Bitmap Index Scan" and "Index Cond" not in node:
            found.append(f"whole index {node['Index Name']}")
    return found


def _statements() -> list[tuple[str, str | QuerySet[Any, Any], Any, str | None]]:
    """(job, statement, parameters, the index its due rows come through)."""
    now = timezone.now()
    some_ids = [uuid.UUID(int=i) for i in range(1, 50)]
    poll = {
        "provider": "test-aliyun",
        "since": now - dt.timedelta(hours=6),
        "until": now - dt.timedelta(seconds=30),
        "batch": polling.POLL_BATCH,
    }
    return [
        ("relay-outbox", relay_query(1000), None, None),
        ("enqueue-due-scheduled", transitions.DUE_IDS, {"batch": 1000}, "due_by_time"),
        (
            "enqueue-due-scheduled: the messages",
            transitions.DUE,
            {"ids": some_ids, "lease": queued_lease()},
            None,  # planned with its ids: pruned to none here (see the next test)
        ),
        ("sweep: expired leases", transitions.LAPSED_AND_EXPIRED, {"batch": 1000}, "msg_lease"),
        ("sweep: expire", transitions.EXPIRE, {"ids": some_ids}, "dispatch_message_pkey"),
        (
            "sweep: lapsed",
            transitions.LAPSED,
            {"idle_lanes": ["normal", "bulk"], "overdue": queued_lease() * 10, "batch": 1000, "lease": queued_lease()},
            "msg_lease",
        ),
        (
            "purge-idempotency-keys",
            PURGE_IDEMPOTENCY,
            {"before": now - dt.timedelta(hours=24), "batch": 10_000},
            "idempotency_created",
        ),
        (
            "poll-provider-receipts",
            polling.AWAITING,
            {**poll, "after_at": polling._START[0], "after_id": polling._START[1]},
            "due_by_time",
        ),
        (
            "poll-provider-receipts (lap under way)",
            polling.AWAITING,
            {**poll, "after_at": now - dt.timedelta(hours=2), "after_id": uuid.UUID(int=0)},
            "due_by_time",
        ),
        (
            "poll-provider-receipts, flag-receipt-timeouts: the messages",
            polling.SENT_BY_ID,
            {"ids": some_ids},
            None,  # planned with its ids: pruned to none here (see the next test)
        ),
        ("rematch-early-receipts", matching.REMATCH, matching.rematch_params(), "receipt_unmatched"),
        (
            "flag-receipt-timeouts",
            polling.LATE,
            {
                "providers": ["test-aliyun", "test-tencent"],
                "since": now - dt.timedelta(days=1),
                "until": now - dt.timedelta(minutes=10),
                "after_at": now - dt.timedelta(minutes=20),
                "after_id": uuid.UUID(int=0),
                "batch": 1000,
            },
            "due_by_time",
        ),
        (
            "flag-receipt-timeouts: rows past the windows",
            polling.DUE_PAST,
            # Each run leaves none past the windows: the next finds a minute's worth (here: the history's oldest).
            {"providers": ["test-aliyun", "test-tencent", "test-wecom"], "before": now - dt.timedelta(days=29, hours=23)},
            "due_by_time",
        ),
        ("flag-receipt-timeouts: flagged", polling.FLAGGED, {"ids": some_ids}, "dispatch_due_pkey"),
        (
            "failover-silent-verifications",
            candidates_query(None, Status.SENT, now - dt.timedelta(seconds=30)),
            None,
            "msg_verification_sent",
        ),
        ("publish-due-callbacks", callbacks_due_query(1000), None, "callback_due"),
        ("routing-quality", quality.RECENT_MINUTES, {"since": now - dt.timedelta(minutes=10)}, "rollup_time"),
    ]


def test_every_periodic_statement_reads_only_its_due_rows(history: None) -> None:
    failures = []
    parents = _parent_indexes()
    empty = _empty_partitions()
    for job, statement, params, index in _statements():
        plan = _plan(statement, params)
        summary = _summary(plan)
        whole = _whole_reads(plan, empty)
        if whole:
            failures.append(f"{job}: reads whole {whole} ({summary})")
        if index is not None and not any(_index(node, parents) == index for node in _nodes(plan)):
            failures.append(f"{job}: not through {index} ({summary})")
    assert not failures, "\n".join(failures)


def test_the_jobs_read_their_messages_from_the_partitions_that_hold_them_only(history: None) -> None:
    """dispatch_due holds the scheduled and sent messages (kept by the triggers as the history went in);
    a batch of them read by id plans over their own days' partitions, however many days are kept."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, count(*) FROM dispatch_due GROUP BY kind")
        due = dict(cursor.fetchall())
        cursor.execute("SELECT status, count(*) FROM dispatch_message WHERE status IN ('scheduled', 'sent') GROUP BY status")
        assert due == dict(cursor.fetchall())
        cursor.execute(
            "SELECT id FROM dispatch_message WHERE status = 'sent' AND created_at > now() - interval '36 hours' LIMIT 50"
        )
        recent = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'dispatch_message'::regclass")
        [(kept,)] = cursor.fetchall()
    assert recent and kept > 2  # (a fresh database has ~40 here: the history's days and the week ahead)
    for statement, params in ((polling.SENT_BY_ID, {"ids": recent}), (transitions.DUE, {"ids": recent, "lease": queued_lease()})):
        plan = _plan(statement, params)
        read = {node["Relation Name"] for node in _nodes(plan) if _table(node) == "dispatch_message"}
        assert 1 <= len(read) <= 2, read
        assert not [node for node in _nodes(plan) if node["Node Type"] == "Seq Scan"], _summary(plan)
