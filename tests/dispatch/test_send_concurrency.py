"""Concurrent requests: one Idempotency-Key → one set of messages; quota never overshoots.

The messages are scheduled for tomorrow: these tests are about accepting, and no task of theirs
may still be running in the session's worker when the test database is flushed."""

from __future__ import annotations

import datetime as dt
import functools
from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.dispatch.models import Message
from tests.helpers import post_send_from_thread

pytestmark = pytest.mark.django_db(transaction=True)
TOMORROW = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()


def _post_concurrently(api, bodies_and_headers, workers: int):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(functools.partial(post_send_from_thread, api), bodies_and_headers))


def test_twenty_concurrent_identical_requests_create_one_set(make_api_client, make_template) -> None:
    api = make_api_client("concurrent", rate_limit=1000)
    make_template(api)
    body = {
        "template": "order_shipped",
        "to": [{"phone": "+8613800138000"}, {"phone": "+8613800138001"}],
        "params": {"order_no": "1"},
        "send_at": TOMORROW,
    }
    responses = _post_concurrently(api, [(body, {"HTTP_IDEMPOTENCY_KEY": "same-key"})] * 20, workers=20)

    assert {r.status_code for r in responses} == {202}
    assert len({r.content for r in responses}) == 1
    assert Message.objects.count() == 2


def test_quota_holds_under_fifty_concurrent_requests(make_api_client, make_template) -> None:
    api = make_api_client("quota", rate_limit=1000, daily_quota=30)
    make_template(api)
    bodies = [
        (
            {
                "template": "order_shipped",
                "to": {"phone": f"+86138001380{i:02d}"},
                "params": {"order_no": "1"},
                "send_at": TOMORROW,
            },
            {},
        )
        for i in range(50)
    ]
    responses = _post_concurrently(api, bodies, workers=25)

    codes = [r.status_code for r in responses]
    assert codes.count(202) == 30
    assert codes.count(429) == 20
    assert all(r.json()["code"] == "quota_exceeded" for r in responses if r.status_code == 429)
    assert Message.objects.count() == 30
