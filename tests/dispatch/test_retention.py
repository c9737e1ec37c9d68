"""Partitioned tables and retention: old data leaves by whole partitions, never a message in flight,
and upgrading an installation keeps every row."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.accounts.models import Account
from apps.accounts.services import account_set_callback
from apps.dispatch.models import Message, Rollup
from apps.dispatch.retention import run_retention
from apps.receipts.callbacks import callbacks_enqueue
from apps.receipts.models import CallbackAttempt, ProviderReceipt, StatusCallback
from messaging_center import ids, partitions

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.timedelta(days=1)


@pytest.fixture
def restore_partitions() -> Any:
    """Retention run with a clock days ahead drops today's partitions: make them again afterwards."""
    yield
    with connection.cursor() as wrapper:
        partitions.ensure_partitions(wrapper.cursor, now=timezone.now(), first_day=timezone.now() - DAY)


def _sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _receipt(message: Message, status: str = "delivered") -> None:
    now = timezone.now()
    ProviderReceipt.objects.create(
        provider=message.provider,
        kind="aliyun",
        provider_message_id=message.provider_message_id,
        to=message.address,
        status=status,
        reported_at=now,
        received_at=now,
        message=message,
        matched_at=now,
    )


def _with_history(message: Message) -> None:
    """The rows a delivered message leaves: events, a receipt, a status callback and an attempt."""
    message.events.create(status="sent", at=timezone.now(), provider=message.provider, attempt=1)
    _receipt(message)
    callbacks_enqueue(message_ids=[message.id], status="delivered")
    callback = StatusCallback.objects.get(message_id=message.id)
    CallbackAttempt.objects.create(callback=callback, message_id=message.id, at=timezone.now(), url="https://x.example/cb")


def _counts(message_ids: list[uuid.UUID]) -> dict[str, int]:
    return {
        "messages": Message.objects.filter(id__in=message_ids).count(),
        "events": _sql("SELECT count(*) FROM dispatch_messageevent WHERE message_id = ANY(%s)", [message_ids])[0][0],
        "receipts": ProviderReceipt.objects.filter(message_id__in=message_ids).count(),
        "callbacks": StatusCallback.objects.filter(message_id__in=message_ids).count(),
        "attempts": CallbackAttempt.objects.filter(message_id__in=message_ids).count(),
    }


def _partition_of_today(table: str) -> str:
    return partitions.partition_name(table, partitions.day_start(timezone.now()))


def _partition_holding(table: str, key: str, value: uuid.UUID) -> str:
    return _sql(f"SELECT tableoid::regclass::text FROM {table} WHERE {key} = %s", [value])[0][0]  # noqa: S608 - our names


def test_tables_are_partitioned_by_day_with_partitions_ahead() -> None:
    for table in partitions.TABLES:
        names = [part.name for part in _partitions(table.name)]
        assert _partition_of_today(table.name) in names or any(name.endswith("_legacy") for name in names), table
        tomorrow = partitions.partition_name(table.name, partitions.day_start(timezone.now() + DAY))
        assert tomorrow in names, (table.name, names)


def _partitions(table: str) -> list[partitions.Partition]:
    with connection.cursor() as wrapper:
        return partitions.partitions(wrapper.cursor, table)


def test_retention_drops_old_partitions_and_never_a_message_in_flight(
    make_api_client: Any, make_template: Any, restore_partitions: None
) -> None:
    short, long_ = make_api_client("short"), make_api_client("long")
    Account.objects.filter(id=short.account.id).update(retention_days=1)
    Account.objects.filter(id=long_.account.id).update(retention_days=3)
    made: dict[str, list[Message]] = {"short": [], "long": []}
    for name, api in (("short", short), ("long", long_)):
        make_template(api, "notice", content="Order {{n}} shipped")
        account_set_callback(account=api.account, callback_url="https://hooks.example.com/mc")
        for number in range(4):
            response = api.post(
                "/api/v1/messages", {"template": "notice", "to": {"phone": f"+8613900{number:06d}"}, "params": {"n": "1"}}
            )
            assert response.status_code == 202, response.content
            message = Message.objects.get(id=ids.decode("msg", response.json()["messages"][0]["id"]))
            Message.objects.filter(id=message.id).update(
                status="delivered",
                provider="test-aliyun",
                provider_message_id=f"biz-{name}-{number}",
                attempts=1,
                sent_at=timezone.now(),
                delivered_at=timezone.now(),
            )
            message.refresh_from_db()
            _with_history(message)
            made[name].append(message)
    # In flight for the short account: one scheduled weeks ahead, one being sent, one sent awaiting its receipt.
    tomorrow = (timezone.now() + 20 * DAY).isoformat()
    scheduled = short.post(
        "/api/v1/messages", {"template": "notice", "to": {"phone": "+8613911111111"}, "params": {"n": "2"}, "send_at": tomorrow}
    )
    # The other two are accepted scheduled as well, out of the suite's worker's reach (a queued one could
    # be sent, and its receipt move it on, while the test sets it up), and set in flight below.
    queued = short.post(
        "/api/v1/messages", {"template": "notice", "to": {"phone": "+8613922222222"}, "params": {"n": "3"}, "send_at": tomorrow}
    )
    awaiting = short.post(
        "/api/v1/messages", {"template": "notice", "to": {"phone": "+8613933333333"}, "params": {"n": "4"}, "send_at": tomorrow}
    )
    in_flight = [ids.decode("msg", r.json()["messages"][0]["id"]) for r in (scheduled, queued, awaiting)]
    assert Message.objects.get(id=in_flight[0]).status == "scheduled"
    delivered_short = [m.id for m in made["short"]]
    delivered_long = [m.id for m in made["long"]]
    before = _counts(delivered_short)
    assert before == {"messages": 4, "events": 4, "receipts": 4, "callbacks": 4, "attempts": 4}

    # Two days on: the short account's delivered messages are past their 1 day; the long one's are not.
    later = timezone.now() + 2 * DAY
    # As a worker would leave them: one being sent (its lease running, so that the suite's worker cannot
    # take it), one sent awaiting its receipt.
    Message.objects.filter(id=in_flight[1]).update(status="sending", lease_until=later + dt.timedelta(minutes=5))
    Message.objects.filter(id=in_flight[2]).update(status="sent", sent_at=later - dt.timedelta(minutes=5), attempts=1)
    group = {
        table.name: _partition_holding(table.name, table.key if table.key == "message_id" else "id", delivered_short[0])
        for table in (partitions.MESSAGES, partitions.EVENTS, partitions.CALLBACKS, partitions.ATTEMPTS)
    }
    today = group["dispatch_message"]
    report = run_retention(now=later)
    assert today in report.rewritten and report.rewritten[today] == 4 + 3  # the long account's four, three in flight
    assert _counts(delivered_short) == dict.fromkeys(before, 0)
    assert _counts(delivered_long) == before
    assert Message.objects.filter(id__in=in_flight).count() == 3
    assert short.get(f"/api/v1/messages/{made['short'][0].public_id}").status_code == 404
    detail = short.get(f"/api/v1/messages/{ids.encode('msg', in_flight[0])}")
    assert detail.status_code == 200 and detail.json()["status"] == "scheduled"
    assert long_.get(f"/api/v1/messages/{made['long'][0].public_id}").json()["events"]
    # The service goes on writing into the rewritten partition: a message sent now lands in it.
    assert (
        short.post(
            "/api/v1/messages", {"template": "notice", "to": {"phone": "+8613944444444"}, "params": {"n": "5"}}
        ).status_code
        == 202
    )

    # Five days on: the long account is past its 3 days too, and the sent message's receipt window has
    # passed. Only the scheduled message and the one being sent are kept.
    report = run_retention(now=timezone.now() + 5 * DAY)
    assert _counts(delivered_long) == dict.fromkeys(before, 0)
    assert set(Message.objects.filter(id__in=in_flight).values_list("id", flat=True)) == set(in_flight[:2])
    assert today in report.rewritten and today not in report.dropped
    # Stats come from rollups, which outlive the rows: the deleted messages still count. Minute rows
    # older than they are read have left.
    groups = short.get("/api/v1/stats", {"group_by": "day"}).json()["groups"]
    assert sum(g["delivered"] for g in groups) == 4
    # (Rows of the delivered messages.)
    assert report.purged["dispatch_rollup"] > 0
    assert not Rollup.objects.filter(account_id=short.account.id, grain="minute", outcome="delivered").exists()
    assert Rollup.objects.filter(account_id=short.account.id, grain="day").exists()

    # Once nothing in the day is in flight, the whole day leaves by dropping its partitions.
    Message.objects.filter(status__in=["scheduled", "queued", "sending", "sent"]).update(status="canceled")
    report = run_retention(now=timezone.now() + 5 * DAY)
    assert set(group.values()) <= set(report.dropped)
    assert not Message.objects.filter(account_id__in=[short.account.id, long_.account.id]).exists()


def test_upgrade_keeps_every_row(make_api_client: Any, make_template: Any) -> None:
    """The migration from plain tables: rows written before it are all there after, in a partition of
    their own, and new rows go to daily partitions."""
    api = make_api_client("upgrade")
    make_template(api, "notice", content="Order {{n}} shipped")
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    before = [("dispatch", "0009_platform_cap_rows"), ("receipts", "0007_links_without_constraints")]
    executor.migrate(before)
    try:
        assert not _sql("SELECT 1 FROM pg_class WHERE relname = 'dispatch_message' AND relkind = 'p'")
        message_ids = ids.uuid7_many(50)
        rows = [(mid, api.account.id, f"+86139{index:08d}", f"单号 {index} shipped") for index, mid in enumerate(message_ids)]
        with connection.cursor() as cursor:
            cursor.executemany(
                """
                INSERT INTO dispatch_message (id, account_id, batch_id, template_code, channel, category, priority, address,
                    user_id, params, title, content, status, code, detail, provider, provider_message_id, attempts,
                    created_at, expires_at, needs_reconcile)
                VALUES (%s, %s, gen_random_uuid(), 'notice', 'sms', 'transactional', 'normal', %s, '', '{}', '', %s,
                    'delivered', '', '', 'test-aliyun', 'biz', 1, now(), now() + interval '1 day', false)
                """,
                rows,
            )
            cursor.executemany(
                "INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider) "
                "VALUES (gen_random_uuid(), %s, 'sent', now(), '', '', 'test-aliyun')",
                [(mid,) for mid in message_ids],
            )
            cursor.executemany(
                "INSERT INTO receipts_statuscallback (id, account_id, message_id, status, body, state, attempts, "
                "next_attempt_at, created_at, last_error) VALUES (%s, %s, %s, 'sent', '{}', 'delivered', 1, now(), now(), '')",
                [(ids.uuid7(), api.account.id, mid) for mid in message_ids],
            )
            cursor.execute(
                "INSERT INTO receipts_callbackattempt (id, callback_id, at, url, error, duration_ms) "
                "SELECT gen_random_uuid(), id, now(), 'https://x.example', '', 5 FROM receipts_statuscallback"
            )
            cursor.executemany(
                'INSERT INTO receipts_providerreceipt (id, provider, kind, provider_message_id, "to", status, code, detail, '
                "source, reported_at, received_at, message_id, matched_at) "
                "VALUES (%s, 'test-aliyun', 'aliyun', %s, '', 'delivered', '', '', 'push', now(), now(), %s, now())",
                [(ids.uuid7(), f"biz-{index}", mid) for index, mid in enumerate(message_ids)],
            )
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    finally:
        MigrationExecutor(connection).migrate(leaves)
    assert _sql("SELECT 1 FROM pg_class WHERE relname = 'dispatch_message' AND relkind = 'p'")
    counts = _counts(message_ids)
    assert counts == {"messages": 50, "events": 50, "receipts": 50, "callbacks": 50, "attempts": 50}
    assert _partitions("dispatch_message")[0].name == "dispatch_message_legacy"
    detail = api.get(f"/api/v1/messages/{ids.encode('msg', message_ids[7])}")
    assert detail.status_code == 200 and detail.json()["content"] == "单号 7 shipped" and detail.json()["events"]
    # A receipt replayed for a message from before the upgrade is still dropped as a duplicate.
    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO receipts_providerreceipt (id, provider, kind, provider_message_id, "to", status, code, detail, '
            "source, reported_at, received_at, message_id, matched_at) "
            "VALUES (%s, 'test-aliyun', 'aliyun', 'biz-7', '', 'delivered', '', '', 'push', now(), now(), NULL, NULL) "
            "ON CONFLICT DO NOTHING",
            [ids.uuid7()],
        )
        assert cursor.rowcount == 0
    # The old table holds everything up to the end of the day of the upgrade; daily partitions follow.
    response = api.post("/api/v1/messages", {"template": "notice", "to": {"phone": "+8613955555555"}, "params": {"n": "1"}})
    assert response.status_code == 202
    tomorrow = partitions.partition_name("dispatch_message", partitions.day_start(timezone.now() + DAY))
    assert tomorrow in [p.name for p in _partitions("dispatch_message")]
