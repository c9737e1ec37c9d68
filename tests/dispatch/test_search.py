"""`q` searches (API.md, Sending): a substring of Chinese or Latin text, within a window of at most 31 days
(default the last 7), through the gram index; API reads stop at their statement timeout with a 503."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.dispatch.models import Message
from messaging_center import ids
from tests.helpers import move_back

pytestmark = pytest.mark.django_db


@pytest.fixture
def send(api, make_template):
    make_template(api, code="parcel", content="【驿站】{{text}}")

    def send(text: str) -> str:
        response = api.post(
            "/api/v1/messages", {"template": "parcel", "to": {"phone": "+8613800138000"}, "params": {"text": text}}
        )
        assert response.status_code == 202, response.content
        return response.json()["messages"][0]["id"]

    return send


def _found(api, **params) -> list[str]:
    response = api.get("/api/v1/messages", params)
    assert response.status_code == 200, response.content
    return [m["id"] for m in response.json()["results"]]


def _age(public_id: str, days: float) -> str:
    return ids.encode("msg", move_back(ids.decode("msg", public_id), days))


def test_q_finds_chinese_and_latin_substrings_and_nothing_else(api, send) -> None:
    parcel = send("您的快递已到达菜鸟驿站。取件码 5-2-1")
    zebra = send("Refund R12 approved: Zebra-crossing 50% off")
    send("Your order has shipped")

    assert _found(api, q="菜鸟") == [parcel]
    assert _found(api, q="快递已到达菜鸟驿站") == [parcel]
    assert len(_found(api, q="驿站")) == 3  # the template's own text
    assert _found(api, q="Zebra-cross") == [zebra]
    assert _found(api, q="zebra") == []  # a substring, as the content has it
    assert _found(api, q="50%") == [zebra]
    assert _found(api, q="5%") == []  # % and _ are characters, not patterns
    assert _found(api, q="R1_") == []
    assert _found(api, q="菜") == [parcel]  # one character: no gram, the window alone bounds the scan
    assert _found(api, q="菜鸟 驿站") == []


def test_q_searches_the_last_7_days_unless_given_a_window_of_at_most_31(api, send) -> None:
    recent = send("first delivery attempt failed")
    eight_days = _age(send("first delivery attempt failed"), 8)
    forty_days = _age(send("first delivery attempt failed"), 40)
    now = timezone.now()

    assert _found(api, q="attempt") == [recent]
    assert _found(api, q="attempt", created_after=(now - dt.timedelta(days=31)).isoformat()) == [recent, eight_days]
    assert _found(api, q="attempt", created_before=(now - dt.timedelta(days=7)).isoformat()) == [eight_days]
    window = {
        "created_after": (now - dt.timedelta(days=45)).isoformat(),
        "created_before": (now - dt.timedelta(days=20)).isoformat(),
    }
    assert _found(api, q="attempt", **window) == [forty_days]
    # The other filters cover the whole retained history.
    assert _found(api, to="+8613800138000") == [recent, eight_days, forty_days]


@pytest.mark.parametrize(
    "window",
    [
        {"created_after": 32},
        {"created_after": 40, "created_before": 8},
    ],
)
def test_q_over_more_than_31_days_is_400_naming_the_field(api, send, window) -> None:
    now = timezone.now()
    params = {name: (now - dt.timedelta(days=days)).isoformat() for name, days in window.items()}
    response = api.get("/api/v1/messages", {"q": "attempt", **params})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert list(body["errors"]) == ["created_after"]
    assert "31 days" in body["detail"]
    assert api.get("/api/v1/messages", params).status_code == 200  # without q, any window


def _seed(account_id, rows: int, content: str) -> None:
    """`rows` messages of the last few hours straight into the table, as a long history would be."""
    start = int((timezone.now() - dt.timedelta(hours=6)).timestamp() * 1000)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO dispatch_message (id, account_id, batch_id, template_code, channel, category, priority, address,
                user_id, params, title, content, status, code, detail, provider, provider_message_id, attempts,
                created_at, expires_at, needs_reconcile)
            SELECT (lpad(to_hex(%(start)s::bigint + i / 10), 12, '0') || '70008000' || lpad(to_hex(i), 12, '0'))::uuid,
                   %(account)s, %(account)s, 'seed', 'sms', 'transactional', 'high', '+8613800138000', '', '{}', '',
                   %(content)s || i, 'delivered', '', '', 'sim-aliyun', 'p' || i, 1,
                   to_timestamp((%(start)s::bigint + i / 10) / 1000.0), now() + interval '1 hour', false
            FROM generate_series(1, %(rows)s) AS i
            """,
            {"start": start, "account": account_id, "content": content, "rows": rows},
        )
        cursor.execute("ANALYZE dispatch_message")


def test_q_search_reads_the_gram_index_and_finds_messages_in_flight_too(api, send) -> None:
    _seed(api.account.id, 20_000, "Your verification code is ")
    queued = send("Refund approved: zebra-crossing")
    delivered = send("Refund approved: zebra-crossing")
    Message.objects.filter(id=ids.decode("msg", delivered)).update(status="delivered")

    with CaptureQueriesContext(connection) as captured:
        assert _found(api, q="zebra-cross") == [delivered, queued]
    [search] = [q["sql"] for q in captured.captured_queries if "mc_grams" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {search}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        # The index, or on a partitioned table its partitions' indexes.
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'msg_content_grams'::regclass UNION ALL SELECT 'msg_content_grams'"
        )
        names = [row[0] for row in cursor.fetchall()]
    assert any(f"Bitmap Index Scan on {name}" in plan for name in names), plan


def _statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


# Stats read rollups: milliseconds whatever the history, so only a search is slow enough to trip it here.
@pytest.mark.parametrize(("path", "params"), [("/api/v1/messages", {"q": "#"})])
def test_a_read_past_its_statement_timeout_is_503_with_retry_after(api, path, params) -> None:
    _seed(api.account.id, 50_000, "Your verification code is ")
    before = _statement_timeout()
    with override_settings(API_READ_TIMEOUT_MS=1):
        response = api.get(path, params)
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["code"] == "unavailable"
    assert "Narrow" in body["detail"]
    assert response["Retry-After"] == "5"
    assert _statement_timeout() == before  # the connection keeps no timeout

    with override_settings(API_READ_TIMEOUT_MS=60_000):
        assert api.get(path, params).status_code == 200
    assert _statement_timeout() == before


def test_pages_of_a_q_search_walk_every_match_once_newest_first(api, send, monkeypatch) -> None:
    from apps.dispatch import selectors

    monkeypatch.setattr(selectors, "RECENT_SCAN", 4)  # both ways: among the newest rows, then the gram index
    sent = [send("alpha ready" if i % 3 else "beta ready") for i in range(12)]
    Message.objects.filter(id__in=[ids.decode("msg", m) for m in sent[:6]]).update(status="delivered")
    alpha = [m for i, m in enumerate(sent) if i % 3][::-1]

    for limit in (1, 2, 3, 50):
        seen, cursor = [], None
        while True:
            page = api.get("/api/v1/messages", {"q": "alpha", "limit": limit, **({"cursor": cursor} if cursor else {})}).json()
            seen += [m["id"] for m in page["results"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == alpha, limit
