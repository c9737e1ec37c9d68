"""The history that `make bench` seeds (bench/seed.py) is what its figures say it is: ids of the rows'
own times, a tenth of it beyond the 30-day retention, events and receipts that belong to their
messages, and columns that other changes add filled or refused by name."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection

from bench import seed
from tests.conftest import _database_url

pytestmark = pytest.mark.django_db(transaction=True)

ID_MILLIS = "('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint"


def _plan(api: Any, make_template: Any, total: int, extra: dict[str, tuple[tuple[str, ...], str]]) -> seed.Plan:
    template = make_template(api, code="hist_order")
    sms = seed.Template(str(template.id), "hist_order", "sms", "transactional", "您的订单{o}已发货 Your order {o}.{w}", 1.0)
    other = seed.Template(None, "hist_mail", "email", "transactional", "Receipt {o}{w}", 0.2)
    providers = {
        "sms": (seed.Provider("p-aliyun", "aliyun", "poll"), seed.Provider("p-tencent", "tencent", "push")),
        "email": (seed.Provider("p-smtp", "smtp", "push"),),
    }
    sender = seed.Sender(str(api.account.id), 0.8, (sms, other))
    stranger = seed.Sender(str(uuid.uuid4()), 0.2, (sms,))
    now_ms = int(time.time() * 1000)
    return seed.Plan(_database_url(), total, now_ms, (sender, stranger), providers, extra, "+8613700000123")


def _one(query: str, params: tuple[object, ...] = ()) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()


def test_seeded_history_is_time_ordered_and_consistent(api: Any, make_template: Any) -> None:
    plan = _plan(api, make_template, 10_000, {})

    (messages, events, receipts), _ = seed.seed(plan, streams=2)

    assert messages == 10_000 and 1.7 * messages < events < 2.1 * messages and 0.85 * messages < receipts < messages
    assert _one("SELECT count(*), count(DISTINCT status) FROM dispatch_message") == (10_000, len(seed.STATUSES))
    # Each id carries its row's own time (ids are time-ordered; the tables are partitioned by them).
    for table, at in (
        ("dispatch_message", "created_at"),
        ("dispatch_messageevent", "at"),
        ("receipts_providerreceipt", "received_at"),
    ):
        query = f"SELECT count(*) FROM {table} WHERE {ID_MILLIS} <> floor(extract(epoch FROM {at}) * 1000)::bigint"  # noqa: S608
        assert _one(query) == (0,), table
    # A tenth lies 31-35 days back (beyond the default retention), the rest in the last 30 days.
    beyond, recent, newest = _one(
        "SELECT count(*) FILTER (WHERE created_at < now() - interval '31 days' AND created_at >= now() - interval '35 days'), "
        "count(*) FILTER (WHERE created_at >= now() - interval '30 days'), max(created_at) < now() - interval '14 minutes' "
        "FROM dispatch_message"
    )
    assert (beyond, recent, newest) == (1_000, 9_000, True)
    # Mostly the account's own (80 % of the requests; bulk ones make the share of messages vary).
    assert 0.6 < _one("SELECT count(*) FROM dispatch_message WHERE account_id = %s", (api.account.id,))[0] / 10_000 < 0.95
    # Events and receipts belong to messages, receipts as the provider reported them.
    assert _one(
        "SELECT count(*) FROM dispatch_messageevent e LEFT JOIN dispatch_message m ON m.id = e.message_id WHERE m.id IS NULL"
    ) == (0,)
    assert _one(
        "SELECT count(*) FROM receipts_providerreceipt r JOIN dispatch_message m ON m.id = r.message_id "
        "WHERE (m.provider, m.provider_message_id, m.address, m.status) "
        "IS DISTINCT FROM (r.provider, r.provider_message_id, r.to, r.status)"
    ) == (0,)
    assert _one(
        "SELECT count(*) FROM dispatch_message m WHERE status IN ('delivered', 'undelivered') "
        "AND NOT EXISTS (SELECT 1 FROM receipts_providerreceipt r WHERE r.message_id = m.id)"
    ) == (0,)


def test_columns_added_by_other_changes_are_filled_or_refused_by_name(api: Any, make_template: Any) -> None:
    with psycopg.connect(_database_url(), autocommit=True) as conn:
        conn.execute("ALTER TABLE dispatch_message ADD COLUMN bench_probe boolean NOT NULL")
        try:
            plan = _plan(api, make_template, 100, seed.extra_columns(conn, "2026-01-01 00:00:00+00"))
            seed.seed(plan, streams=1)
            assert _one("SELECT count(*), bool_or(bench_probe) FROM dispatch_message") == (100, False)

            conn.execute("DELETE FROM dispatch_message")  # a NOT NULL column without a default needs an empty table
            conn.execute("ALTER TABLE dispatch_message ADD COLUMN bench_ref uuid NOT NULL")
            with pytest.raises(SystemExit, match=r"dispatch_message\.bench_ref \(uuid\) is NOT NULL without a default"):
                seed.extra_columns(conn, "2026-01-01 00:00:00+00")
        finally:
            conn.execute("ALTER TABLE dispatch_message DROP COLUMN IF EXISTS bench_probe, DROP COLUMN IF EXISTS bench_ref")
