"""Rollups (#21): stats read from `dispatch_rollup` equal stats computed from the raw message rows,
on randomized traffic driven through the real paths — the send and verification APIs, delivery
chunks against the provider simulator (errors, timeouts), receipts (late ones too: for expired
messages, and delivered after undelivered), verification failover, expiry, cancel, code checks —
over creation times spread across 40 days, so that day, hour and minute rows all serve a range."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from apps.dispatch import services
from apps.dispatch.delivery import chunk, claims
from apps.dispatch.events import DUPLICATE_SEND, record_events
from apps.dispatch.models import LATENCY_BOUNDS_MS, Message, MessageEvent, Provider, ProviderPrice, Status
from apps.dispatch.providers.base import Receipt
from apps.dispatch.providers_config import provider_save
from apps.dispatch.sealing import unseal
from apps.dispatch.segments import segment_of
from apps.dispatch.stats import GROUP_KEYS, percentile, stats_range
from apps.receipts.matching import receipts_record
from apps.receipts.models import Failover
from messaging_center import ids

pytestmark = pytest.mark.django_db

PENDING = ("scheduled", "queued", "sending", "retry_wait")
# The reference: the figures straight from the raw rows (what stats.py computed before the rollups),
# with a pending message under provider "" and the range taken to the minute, as the contract says.
RAW_KEYS = {
    "provider": f"CASE WHEN m.status IN {PENDING} THEN '' ELSE m.provider END",
    "channel": "m.channel",
    "template": "m.template_code",
    "day": "to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "segment": "m.segment",
}
RAW_STATS = """
    SELECT {key} AS key,
           count(*),
           count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'undelivered')),
           count(*) FILTER (WHERE m.status = 'delivered'),
           count(*) FILTER (WHERE m.status = 'undelivered'),
           count(*) FILTER (WHERE m.status = 'failed'),
           count(*) FILTER (WHERE m.status = 'expired'),
           count(*) FILTER (WHERE m.status = 'suppressed'),
           count(*) FILTER (WHERE m.status = 'rejected'),
           array_agg(extract(epoch FROM m.delivered_at - m.sent_at)::float8 * 1000 ORDER BY m.delivered_at - m.sent_at)
               FILTER (WHERE m.status = 'delivered' AND m.delivered_at IS NOT NULL),
           count(v.id),
           count(v.verified_at),
           coalesce(sum(m.cost), 0)
    FROM dispatch_message m LEFT JOIN receipts_verification v ON v.message_id = m.id
    WHERE m.account_id = %(account)s AND m.created_at >= %(after)s AND m.created_at < %(before)s
    GROUP BY 1 ORDER BY 1
"""
# Provider calls: the events that record one (a reason), by when they were made.
RAW_CALL_KEYS = {**RAW_KEYS, "provider": "e.provider", "day": "to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"}
RAW_CALLS = """
    SELECT {key} AS key, e.reason, count(*)
    FROM dispatch_messageevent e JOIN dispatch_message m ON m.id = e.message_id
    WHERE m.account_id = %(account)s AND e.reason <> '' AND e.provider <> '' AND e.at >= %(after)s AND e.at < %(before)s
    GROUP BY 1, 2
"""

# Duplicates to a person: the `duplicate_send` events, by the provider that delivered it too and when.
RAW_DUPLICATES = f"""
    SELECT {{key}} AS key, count(*)
    FROM dispatch_messageevent e JOIN dispatch_message m ON m.id = e.message_id
    WHERE m.account_id = %(account)s AND e.code = '{DUPLICATE_SEND}' AND e.provider <> ''
      AND e.at >= %(after)s AND e.at < %(before)s
    GROUP BY 1
"""  # noqa: S608 - our own constants


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _raw_stats(account_id: uuid.UUID, group_by: str, after: dt.datetime, before: dt.datetime) -> list[dict[str, Any]]:
    params = {"account": account_id, "after": after, "before": before}
    with connection.cursor() as cursor:
        cursor.execute(RAW_STATS.format(key=RAW_KEYS[group_by]), params)
        messages = {row[0]: row for row in cursor.fetchall()}
        cursor.execute(RAW_CALLS.format(key=RAW_CALL_KEYS[group_by]), params)
        calls: dict[str, dict[str, int]] = {}
        for key, reason, count in cursor.fetchall():
            calls.setdefault(key, {})[reason] = count
        cursor.execute(RAW_DUPLICATES.format(key=RAW_CALL_KEYS[group_by]), params)
        twice = dict(cursor.fetchall())
    groups = []
    for key in sorted({*messages, *calls, *twice}):
        row = messages.get(key) or (key, 0, 0, 0, 0, 0, 0, 0, 0, None, 0, 0, 0)
        _, total, sent, delivered, undelivered, failed, expired, suppressed, rejected, latencies, codes, filled, cost = row
        made = calls.get(key, {})
        groups.append(
            {
                "key": key,
                "total": total,
                "sent": sent,
                "delivered": delivered,
                "undelivered": undelivered,
                "failed": failed,
                "expired": expired,
                "suppressed": suppressed,
                "rejected": rejected,
                "attempts": sum(made.values()),
                "errors": {reason: n for reason, n in made.items() if reason != "accepted"},
                "success_rate": _rate(made.get("accepted", 0), sum(made.values())),
                "duplicates": twice.get(key, 0),
                "receipt_rate": _rate(delivered + undelivered, sent),
                "delivery_rate": _rate(delivered, sent),
                "latency_p50_ms": latencies,
                "latency_p95_ms": latencies,
                "fill_rate": _rate(filled, codes),
                "cost": int(cost) / 1_000_000,
                "currency": "CNY",
            }
        )
    return groups


def _bucket(ms: float) -> int:
    return sum(1 for bound in LATENCY_BOUNDS_MS if bound <= ms)


def _near(estimate: float, latencies: list[float], fraction: float) -> bool:
    """The histogram's percentile is within one bucket of the exact one (percentile_cont: between the
    samples at ranks ⌊(N-1)p⌋ and ⌈(N-1)p⌉) or of the sample at rank ⌈pN⌉ that the histogram finds."""
    position = (len(latencies) - 1) * fraction
    candidates = [latencies[math.floor(position)], latencies[math.ceil(position)]]
    candidates.append(latencies[max(math.ceil(fraction * len(latencies)) - 1, 0)])
    low, high = _bucket(min(candidates)), _bucket(max(candidates))
    return low - 1 <= _bucket(estimate) <= high + 1


NUMBERS = {
    "CN-mobile": "+86138",
    "CN-unicom": "+86186",
    "CN-telecom": "+86189",
    "US": "+12125",
    "GB": "+447911",
    "JP": "+8190",
}


def _phone(rng: random.Random, serial: int) -> tuple[str, str]:
    segment = rng.choice(list(NUMBERS))
    prefix = NUMBERS[segment]
    digits = {"+86": 8, "+1": 6, "+44": 6, "+81": 8}
    width = next(n for p, n in digits.items() if prefix.startswith(p))
    return f"{prefix}{serial % 10**width:0{width}d}", segment


def _providers(sim: Any) -> list[Provider]:
    made = []
    for kind, destinations in (("aliyun", "+86"), ("tencent", "+86"), ("twilio", "")):
        provider = Provider(name=f"test-{kind}", kind=kind, channel="sms", destinations=destinations)
        made.append(provider_save(provider=provider, settings=sim.settings(kind)))
    # Costs in every group: a price per SMS segment for two of them (none for Tencent, so that the
    # tie between the mainland providers stays split by weight: routing unchanged by the prices).
    ProviderPrice.objects.create(provider=made[0], segment="*", price=45_000)
    ProviderPrice.objects.create(provider=made[0], segment="CN-unicom", price=41_500)
    ProviderPrice.objects.create(provider=made[2], segment="*", price=350_000)
    return made


def _messages(status: str | tuple[str, ...]) -> list[Message]:
    statuses = (status,) if isinstance(status, str) else status
    return list(Message.objects.filter(status__in=statuses).order_by("id"))


def _report(rng: random.Random, providers: dict[str, Provider], messages: list[Message], delivered_share: float) -> None:
    by_provider: dict[str, list[Receipt]] = {}
    for message in messages:
        status = "delivered" if rng.random() < delivered_share else "undelivered"
        # The test runs in one transaction, whose now() the finishes wrote as sent_at: reports are
        # dated after it by a latency spread over the histogram (they are applied as of their date).
        sent_at = message.sent_at or timezone.now() - dt.timedelta(hours=1)
        receipt = Receipt(
            provider=message.provider,
            provider_message_id=None,
            message_id=message.public_id,
            to="",
            status=status,  # type: ignore[arg-type]
            code="" if status == "delivered" else "UNDELIV",
            detail="",
            at=sent_at + dt.timedelta(milliseconds=rng.choice([5, 80, 400, 2_500, 9_000, 70_000, 900_000, 5_000_000])),
        )
        by_provider.setdefault(message.provider, []).append(receipt)
    for name, receipts in by_provider.items():
        receipts_record(provider=providers[name], receipts=receipts, source="push")


def _traffic(api: Any, sim: Any, rng: random.Random) -> None:
    providers = {p.name: p for p in _providers(sim)}
    sim.behave("*", receipt="none")  # reports come from this test, at the moments it chooses
    serial = iter(range(1, 10**6))
    for n in range(14):
        template = rng.choice(["notice", "notice", "welcome"])
        to: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 12)):
            roll = rng.random()
            if template == "welcome":
                to.append({"user_id": f"user-{next(serial)}"})
            elif roll < 0.08:
                to.append({"phone": "not a number"})  # rejected
            else:
                to.append({"phone": _phone(rng, next(serial))[0]})
        body: dict[str, Any] = {"template": template, "to": to, "params": {"n": str(n)}}
        if rng.random() < 0.15:
            body["send_at"] = (timezone.now() + dt.timedelta(hours=2)).isoformat()
        response = api.post("/api/v1/messages", body)
        assert response.status_code == 202, response.content
    codes = []
    for _ in range(8):
        phone = _phone(rng, next(serial))[0] if rng.random() < 0.3 else f"+86138{next(serial):08d}"
        sent = api.post("/api/v1/verifications", {"to": {"phone": phone}, "template": "login_code"})
        assert sent.status_code == 202, sent.content
        codes.append((phone, sent.json()["message_id"]))

    # Creation times spread over 40 days (late changes must land in these buckets, not today's).
    for message in Message.objects.all():
        if rng.random() < 0.7:
            back = dt.timedelta(minutes=rng.randint(0, 40 * 24 * 60), seconds=rng.randint(0, 59))
            Message.objects.filter(id=message.id).update(created_at=message.created_at - back)

    # Delivery: a share of calls fail (some ambiguously), several rounds; some messages stay queued.
    sim.behave("tencent", fail_rate=0.4, error="http_500")
    sim.behave("twilio", fail_rate=0.3, error="timeout")
    held = {m.id for m in _messages("queued") if rng.random() < 0.2}  # never handed to a worker
    for _ in range(3):
        waiting = [m.id for m in _messages(("queued", "retry_wait")) if m.id not in held and rng.random() < 0.8]
        Message.objects.filter(id__in=waiting, status="retry_wait").update(lease_until=None)
        chunk.deliver_messages(waiting)
    services.message_cancel(message=_messages("scheduled")[0]) if _messages("scheduled") else None

    # Expiry: some still waiting run out of time (those with a provider keep it: their late reports apply).
    expiring = [m.id for m in _messages(("queued", "retry_wait")) if m.id not in held or rng.random() < 0.5]
    Message.objects.filter(id__in=expiring).update(expires_at=timezone.now() - dt.timedelta(hours=1), lease_until=None)
    claims.expire(expiring)

    # The finishes wrote the transaction's now() as sent_at: as if sent 2 h ago, so that reports can
    # be dated after it by latencies up to over an hour (a report is applied as of its date).
    Message.objects.exclude(sent_at=None).update(sent_at=F("sent_at") - dt.timedelta(hours=2))
    # Receipts: most sent messages get one (undelivered verification codes fail over to another provider);
    # then late ones — for expired messages that had reached a provider, and delivered after undelivered.
    _report(rng, providers, [m for m in _messages("sent") if rng.random() < 0.85], delivered_share=0.7)
    sim.behave("*", fail_rate=0.0)
    chunk.deliver_messages([f.resend_id for f in Failover.objects.all()])
    _report(rng, providers, [m for m in _messages("sent") if rng.random() < 0.5], delivered_share=0.8)
    _report(rng, providers, [m for m in _messages("expired") if m.provider], delivered_share=0.6)
    _report(rng, providers, [m for m in _messages("undelivered") if rng.random() < 0.3], delivered_share=1.0)

    for phone, message_id in codes:
        if rng.random() < 0.6:
            code = unseal(Message.objects.get(id=ids.decode("msg", message_id)).params)["code"]
            api.post("/api/v1/verifications/check", {"to": {"phone": phone}, "code": code})


def _compare(api: Any, group_by: str, after: dt.datetime | None, before: dt.datetime | None) -> int:
    query = {"group_by": group_by}
    if after:
        query["created_after"] = after.isoformat()
    if before:
        query["created_before"] = before.isoformat()
    response = api.get("/api/v1/stats", query)
    assert response.status_code == 200, response.content
    served = response.json()["groups"]
    floor, ceiling = stats_range(after, before, timezone.now())  # minutes; hours and days for old edges
    expected = _raw_stats(api.account.id, group_by, floor, ceiling)
    assert [g["key"] for g in served] == [g["key"] for g in expected], (group_by, after, before)
    for got, want in zip(served, expected, strict=True):
        for field, fraction in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95)):
            latencies, estimate = want.pop(field), got.pop(field)
            assert (latencies is None) == (estimate is None), (group_by, got["key"], field)
            if latencies is not None:
                assert _near(estimate, latencies, fraction), (group_by, got["key"], field, estimate, latencies)
        assert got == want, (group_by, after, before)
    return len(served)


# No hedging: a hedged call's late answer is recorded by a thread of its own, on a connection that
# cannot see this test's uncommitted messages (tests/dispatch/test_hedge.py covers it).
@override_settings(PROVIDER_CALL_DEADLINE_MS={})
def test_stats_from_rollups_equal_stats_from_the_raw_rows(api, make_template, sim) -> None:
    make_template(
        api, code="notice", content="Your code {{n}} is ready.", provider_template_ids={"aliyun": "SMS_100", "tencent": "1001"}
    )
    make_template(api, code="welcome", channel="inbox", title="Hi", content="Welcome {{n}}.")
    make_template(
        api,
        code="login_code",
        category="verification",
        content="Your code is {{code}}.",
        provider_template_ids={"aliyun": "SMS_200", "tencent": "2001"},
    )
    rng = random.Random(21)
    _traffic(api, sim, rng)
    # Duplicates to a person as both producers record them: a delivered report from the provider of an
    # earlier attempt (no call: receipts.matching), a hedged call accepted late (a call: delivery.hedge).
    delivered = list(Message.objects.filter(status="delivered", provider__startswith="test-")[:4])
    assert len(delivered) == 4
    for n, message in enumerate(delivered):
        other = "test-tencent" if message.provider == "test-aliyun" else "test-aliyun"
        record_events(
            [(message.id, message.status, DUPLICATE_SEND, "delivered it too", other, message.attempts)],
            reasons={message.id: "accepted"} if n % 2 else None,
        )

    statuses = set(Message.objects.values_list("status", flat=True))
    assert {"delivered", "undelivered", "expired", "rejected", "scheduled"} <= statuses, statuses
    # Routing picks providers at random: failover and late reports for expired messages happen in most
    # runs, not all; at least one of the two always does.
    late = MessageEvent.objects.filter(status="expired", message__status__in=("delivered", "undelivered"))
    assert Failover.objects.exists() or late.exists()
    now = timezone.now()
    ranges = [
        (None, None),
        (now - dt.timedelta(days=10, minutes=17, seconds=30), None),
        (None, now - dt.timedelta(hours=3, minutes=5)),
        (now - dt.timedelta(days=33, hours=5, minutes=41), now - dt.timedelta(days=2, hours=7, minutes=13)),
        (now - dt.timedelta(hours=30, minutes=4), now - dt.timedelta(hours=1, minutes=2)),
        (now - dt.timedelta(minutes=50), now + dt.timedelta(minutes=1)),
    ]
    seen = 0
    for group_by in GROUP_KEYS:
        for after, before in ranges:
            seen += _compare(api, group_by, after, before)
    assert seen > 50  # the ranges found traffic


def test_segment_of_a_number() -> None:
    assert [segment_of("sms", n) for n in ("+8613800138000", "+8618612345678", "+8618912345678", "+8619212345678")] == [
        "CN-mobile",
        "CN-unicom",
        "CN-telecom",
        "CN-other",
    ]
    assert [segment_of("sms", n) for n in ("+12025550123", "+447700900123", "+819012345678", "+85291234567")] == [
        "US",
        "GB",
        "JP",
        "HK",
    ]
    assert segment_of("sms", "+8617031234567") == "CN-mobile"  # an MVNO block on China Mobile's network
    assert (segment_of("email", "a@example.com"), segment_of("inbox", "")) == ("email", "inbox")


def test_the_sql_segment_and_buckets_match_the_python_ones() -> None:
    """Migration 0010 wrote these rules into SQL for the rows stored before it (and for the triggers)."""
    rng = random.Random(21)
    numbers = [f"+86{rng.choice(['13', '14', '15', '16', '17', '18', '19'])}{rng.randint(0, 10**9 - 1):09d}" for _ in range(300)]
    numbers += [f"+{code}{rng.randint(10**6, 10**9)}" for code in (1, 7, 20, 44, 49, 61, 81, 82, 852, 853, 886, 971, 998, 800)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT a, dispatch_segment('sms', a) FROM unnest(%s::text[]) AS a", [numbers])
        assert dict(cursor.fetchall()) == {n: segment_of("sms", n) for n in numbers}
        samples = [-5.0, 0.0, 9.9, 10.0, 250.0, 999.0, 1000.0, 4e6, *(float(b) for b in LATENCY_BOUNDS_MS)]
        cursor.execute("SELECT ms, dispatch_rollup_bucket(ms) FROM unnest(%s::float8[]) AS ms", [samples])
        assert dict(cursor.fetchall()) == {ms: max(_bucket(ms), 1) for ms in samples}


def test_stored_segments_and_rollups_of_accepted_messages(api, sms_template) -> None:
    response = api.post(
        "/api/v1/messages",
        {
            "template": "notice",
            "to": [{"phone": "+8613800138000"}, {"phone": "+12025550123"}, {"phone": "+8613800138001"}],
            "params": {"n": "1"},
        },
    )
    assert response.status_code == 202, response.content
    assert sorted(Message.objects.values_list("segment", flat=True)) == ["CN-mobile", "CN-mobile", "US"]
    by_segment = {g["key"]: g["total"] for g in api.get("/api/v1/stats", {"group_by": "segment"}).json()["groups"]}
    assert by_segment == {"CN-mobile": 2, "US": 1}
    assert percentile([0, 4], 0.5) == 17.5  # the middle of the bucket [10, 25)


def test_a_deleted_message_leaves_its_groups(api, make_message) -> None:
    kept, deleted = make_message(status=Status.DELIVERED), make_message(status=Status.DELIVERED)
    Message.objects.filter(id=deleted.id).delete()
    [group] = api.get("/api/v1/stats", {"group_by": "provider"}).json()["groups"]
    assert (group["key"], group["total"], group["delivered"]) == (kept.provider, 1, 1)


def test_month_and_day_total_rows_summed_from_the_day_rows_equal_those_the_triggers_keep(api, make_message) -> None:
    """Migration 0014 fills the month and day-totals rows of an existing installation from its day rows:
    what it writes is what the triggers have written as the messages changed."""
    import importlib

    backfills = importlib.import_module("apps.dispatch.migrations.0014_rollup_months").BACKFILLS
    messages = [make_message(status=status) for status in (Status.DELIVERED, Status.DELIVERED, Status.UNDELIVERED, Status.SENT)]
    for n, message in enumerate(messages):  # over two calendar months and several days
        Message.objects.filter(id=message.id).update(
            created_at=message.created_at - dt.timedelta(days=17 * n),
            delivered_at=F("sent_at") + dt.timedelta(seconds=n + 1),
        )
    coarse = "SELECT * FROM dispatch_rollup WHERE grain IN ('month', 'totals') AND messages <> 0"
    with connection.cursor() as cursor:
        cursor.execute(coarse)
        kept = sorted(cursor.fetchall())
        cursor.execute("DELETE FROM dispatch_rollup WHERE grain IN ('month', 'totals')")
        for backfill in backfills:
            cursor.execute(backfill)
        cursor.execute(coarse)
        summed = sorted(cursor.fetchall())
    assert {row[1] for row in kept} == {"month", "totals"} and len({row[2] for row in kept if row[1] == "month"}) >= 2
    assert summed == kept
