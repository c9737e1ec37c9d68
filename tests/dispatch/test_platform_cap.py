"""The platform-wide cap per address: many accounts together cannot send one phone more verification
codes or marketing messages than the cap, on top of each account's own frequency limits. Through the
send and verification APIs (also within one group write), the admin, the metric, and the limits
script on its own with the clock given."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from django.test import Client, TestCase
from prometheus_client import REGISTRY

from apps.dispatch.accept import group
from apps.dispatch.models import DAY, HOUR, PLATFORM_CAP_CATEGORIES, PLATFORM_CAP_DEFAULTS, Message, PlatformCap, cap_limits
from apps.dispatch.policy.limits import (
    FREQUENCY_BUCKET_MS,
    FREQUENCY_LIMITED,
    OK,
    PLATFORM_CAPPED,
    BatchChecks,
    Limiter,
    parse_frequency_limits,
    platform_key,
)
from apps.dispatch.policy.platform_caps import CAPS, platform_limits
from apps.verifications.models import Verification
from messaging_center.broker import redis_client
from messaging_center.vocabulary import DEFAULT_FREQUENCY_LIMITS
from tests.conftest import ApiClient
from tests.dispatch.test_send_groups import _held_key
from tests.helpers import post_send_from_thread, wait_until

PHONE, OTHER_PHONE = "+8613800138000", "+8613800138001"
OWN_LIMIT = "Too many verification messages to this address."


def _platform_detail(maximum: int, category: str = "verification", per: str = "hour") -> str:
    messages = "message" if maximum == 1 else "messages"
    return f"Over the platform-wide limit of {maximum} {category} {messages} per {per} to this address, across all senders."


@pytest.fixture(autouse=True)
def _fresh_caps() -> Iterator[None]:
    """A rolled-back test's cap rows come back without a save signal: forget what this process read."""
    CAPS.clear()
    yield
    CAPS.clear()


def _set_cap(category: str, *, per_hour: int | None = None, per_day: int | None = None, enabled: bool = True) -> None:
    PlatformCap.objects.update_or_create(
        category=category, defaults={"per_hour": per_hour, "per_day": per_day, "enabled": enabled}
    )


def _refusals(category: str) -> float:
    return REGISTRY.get_sample_value("mc_platform_cap_refusals_total", {"category": category}) or 0.0


@pytest.fixture
def code_sender(make_api_client: Callable[..., ApiClient], make_template: Callable[..., Any]) -> Callable[[str], ApiClient]:
    """A new account with a verification template `login_code`."""

    def make(name: str) -> ApiClient:
        api = make_api_client(name, rate_limit=1000)
        make_template(api, code="login_code", category="verification", content="Your code is {{code}}.")
        return api

    return make


def _send_code(api: ApiClient, phone: str) -> Any:
    return api.post("/api/v1/verifications", {"to": {"phone": phone}, "template": "login_code"})


def _send(api: ApiClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = api.post("/api/v1/messages", body)
    assert response.status_code == 202, response.content
    return list(response.json()["messages"])


# --- through the APIs -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_three_accounts_one_phone_the_third_code_is_refused_by_the_platform_cap(code_sender) -> None:
    _set_cap("verification", per_hour=2, per_day=20)
    shop, bank, game = code_sender("shop"), code_sender("bank"), code_sender("game")
    before = _refusals("verification")

    assert _send_code(shop, PHONE).status_code == 202
    assert _send_code(bank, PHONE).status_code == 202
    refused = _send_code(game, PHONE)

    # The verification API answers a platform refusal as it answers the account's own limit.
    assert refused.status_code == 429, refused.content
    assert (refused.json()["code"], refused.json()["detail"]) == ("frequency_limited", _platform_detail(2))
    assert _send_code(game, OTHER_PHONE).status_code == 202  # another phone still goes through
    assert Verification.objects.filter(address=PHONE).count() == 2
    assert _refusals("verification") == before + 1


@pytest.mark.django_db
def test_the_send_api_stores_the_refusal_with_the_platform_detail(code_sender) -> None:
    _set_cap("verification", per_hour=1)
    first, second = code_sender("first"), code_sender("second")
    body = {"template": "login_code", "to": [{"phone": PHONE}, {"phone": OTHER_PHONE}], "params": {"code": "123456"}}

    assert [o["status"] for o in _send(first, {**body, "to": {"phone": PHONE}})] == ["queued"]
    capped, other = _send(second, body)

    assert (capped["status"], capped["code"], capped["detail"]) == ("rejected", "frequency_limited", _platform_detail(1))
    assert capped["detail"].startswith("Over the platform-wide limit of 1 verification message per hour")
    assert other["status"] == "queued"
    message = Message.objects.get(account=second.account, address=PHONE)
    assert (message.status, message.code, message.detail) == ("rejected", "frequency_limited", capped["detail"])


@pytest.mark.django_db
def test_an_entry_over_its_own_account_limit_keeps_the_account_detail(code_sender) -> None:
    _set_cap("verification", per_hour=1)
    shop = code_sender("shop")
    assert _send_code(shop, PHONE).status_code == 202
    again = _send_code(shop, PHONE)  # over the account's 1 per 60 s and over the platform's 1 per hour
    assert again.status_code == 429
    assert (again.json()["code"], again.json()["detail"]) == ("frequency_limited", OWN_LIMIT)


@pytest.mark.django_db
def test_marketing_is_capped_per_day(make_api_client, make_template) -> None:
    _set_cap("marketing", per_day=2)
    senders = []
    for name in ("mall", "travel", "food"):
        api = make_api_client(name)
        make_template(api, code="promo", category="marketing", content="Sale {{n}}")
        senders.append(api)
    before = _refusals("marketing")

    outcomes = [_send(api, {"template": "promo", "to": {"phone": PHONE}, "params": {"n": "1"}})[0] for api in senders]

    assert [o["status"] in ("queued", "scheduled") for o in outcomes] == [True, True, False]  # quiet hours: scheduled
    assert (outcomes[2]["status"], outcomes[2]["code"]) == ("rejected", "frequency_limited")
    assert outcomes[2]["detail"] == _platform_detail(2, "marketing", "day")
    assert _refusals("marketing") == before + 1


@pytest.mark.django_db
def test_an_admin_change_applies_to_the_next_send_without_a_restart(code_sender, operator: Client) -> None:
    shop, bank, game = code_sender("shop"), code_sender("bank"), code_sender("game")
    _set_cap("verification", per_hour=10, per_day=20)
    assert _send_code(shop, PHONE).status_code == 202  # the send path has read the cap (10 per hour) now
    cap = PlatformCap.objects.get(category="verification")

    changed = operator.post(
        f"/admin/dispatch/platformcap/{cap.pk}/change/",
        {"category": "verification", "per_hour": "1", "per_day": "20", "enabled": "on"},
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    refused = _send_code(bank, PHONE)
    assert (refused.status_code, refused.json()["detail"]) == (429, _platform_detail(1))

    turned_off = operator.post(
        f"/admin/dispatch/platformcap/{cap.pk}/change/", {"category": "verification", "per_hour": "1", "per_day": "20"}
    )
    assert turned_off.status_code == 302
    assert _send_code(game, PHONE).status_code == 202


@pytest.mark.django_db
def test_the_admin_lists_both_categories_and_deletes_none(operator: Client) -> None:
    for category in PLATFORM_CAP_CATEGORIES:
        _set_cap(category, per_day=7)
    page = operator.get("/admin/dispatch/platformcap/").content.decode()
    assert "verification" in page and "marketing" in page
    assert operator.get("/admin/dispatch/platformcap/add/").status_code == 403  # one row per category
    cap = PlatformCap.objects.get(category="marketing")
    assert operator.get(f"/admin/dispatch/platformcap/{cap.pk}/delete/").status_code == 403


@pytest.mark.django_db
def test_the_metric_exists_from_start_and_counts_each_refused_entry(code_sender) -> None:
    text = Client().get("/metrics").content.decode()
    for category in PLATFORM_CAP_CATEGORIES:
        assert re.search(rf'^mc_platform_cap_refusals_total\{{category="{category}"\}} \d', text, re.MULTILINE), category
    _set_cap("verification", per_hour=1)
    first, second = code_sender("first"), code_sender("second")
    _send(first, {"template": "login_code", "to": {"phone": PHONE}, "params": {"code": "123456"}})
    before = _refusals("verification")

    entries = [{"phone": PHONE, "params": {"code": f"{i}00000"}} for i in range(3)]  # not duplicates of each other
    outcomes = _send(second, {"template": "login_code", "to": entries, "params": {"code": "1"}})

    assert [o["detail"] for o in outcomes] == [_platform_detail(1)] * 3
    assert _refusals("verification") == before + 3
    scraped = Client().get("/metrics").content.decode()
    assert f'mc_platform_cap_refusals_total{{category="verification"}} {before + 3}' in scraped


@pytest.mark.django_db
def test_inbox_and_wecom_addresses_are_not_capped_across_accounts() -> None:
    """Their addresses are an account's own user ids or an enterprise's: not one person everywhere."""
    _set_cap("verification", per_hour=2, per_day=20)
    assert platform_limits(category="verification", channel="sms") == ((HOUR, 2), (DAY, 20))
    assert platform_limits(category="verification", channel="inbox") == ()
    assert platform_limits(category="marketing", channel="wecom") == ()
    assert platform_limits(category="transactional", channel="sms") == ()


@pytest.mark.django_db
def test_without_a_row_the_shipped_defaults_apply_and_disabled_means_none() -> None:
    PlatformCap.objects.all().delete()
    assert platform_limits(category="verification", channel="sms") == cap_limits(*PLATFORM_CAP_DEFAULTS["verification"])
    _set_cap("marketing", per_day=5, enabled=False)
    assert platform_limits(category="marketing", channel="sms") == ()


# --- a group write --------------------------------------------------------------------------------


def _in_one_group(gate: ApiClient, requests: list[tuple[ApiClient, dict[str, Any]]]) -> list[Any]:
    """As `test_send_groups._in_one_group`, with each request from its own account: the gate's key is
    held by the test, so the requests queue up behind it and are written as one group, in order."""
    held = _held_key(gate.account.id, "gate")
    gate_body = {"template": "order_shipped", "to": {"phone": "+8613900000000"}, "params": {"order_no": "gate"}}
    with ThreadPoolExecutor(max_workers=len(requests) + 1) as pool:
        led: Future[Any] = pool.submit(post_send_from_thread, gate, (gate_body, {"HTTP_IDEMPOTENCY_KEY": "gate"}))
        wait_until(lambda: group.SENDS.waiting() == 1, 10, "the gate request to lead")
        futures = []
        for queued, (api, body) in enumerate(requests, start=2):
            futures.append(pool.submit(post_send_from_thread, api, (body, {})))
            wait_until(lambda queued=queued: group.SENDS.waiting() == queued, 10, "the request to queue", 0.01)
        held.rollback()
        held.close()
        assert led.result().status_code == 202
        return [f.result() for f in futures]


@pytest.mark.django_db(transaction=True)
def test_the_cap_counts_across_the_requests_of_one_group_and_only_accepted_entries(code_sender, make_template) -> None:
    _set_cap("verification", per_hour=2, per_day=20)
    shop, bank, game = code_sender("shop"), code_sender("bank"), code_sender("game")
    make_template(shop)  # the gate's template
    two_codes = [{"phone": PHONE, "params": {"code": "111111"}}, {"phone": PHONE, "params": {"code": "222222"}}]

    responses = _in_one_group(
        shop,
        [
            (shop, {"template": "login_code", "to": two_codes}),
            (bank, {"template": "login_code", "to": {"phone": PHONE}, "params": {"code": "333333"}}),
            (game, {"template": "login_code", "to": [{"phone": PHONE}, {"phone": OTHER_PHONE}], "params": {"code": "4"}}),
        ],
    )

    assert [r.status_code for r in responses] == [202, 202, 202]
    shop_outcomes, [bank_outcome], game_outcomes = (r.json()["messages"] for r in responses)
    # The shop's second code is over its own 1 per minute: refused, so not counted by the platform …
    assert [(o["status"], o.get("detail")) for o in shop_outcomes] == [("queued", None), ("rejected", OWN_LIMIT)]
    # … and the bank's code is the platform's second of the hour; the game's is the third.
    assert bank_outcome["status"] == "queued"
    assert [(o["status"], o.get("detail")) for o in game_outcomes] == [("rejected", _platform_detail(2)), ("queued", None)]
    assert Message.objects.filter(address=PHONE, status="queued").count() == 2


# --- the limits script on its own, the clock given ------------------------------------------------

VERIFICATION = parse_frequency_limits(DEFAULT_FREQUENCY_LIMITS["verification"])


def _checks(account: str, addresses: list[str], *, platform: tuple[tuple[int, int], ...], limits=VERIFICATION) -> BatchChecks:
    return BatchChecks(
        account_id=account,
        template_id=f"tpl-{account}",
        category="verification",
        dedup_window=0,
        frequency_limits=limits,
        addresses=addresses,
        contents=["same"] * len(addresses),
        platform_limits=platform,
    )


def _decide(limiter: Limiter, checks: BatchChecks, now_ms: int, quota: int = 1_000_000, quota_key: str = "q") -> list[int]:
    decision = limiter.batch_decide(quota_key=quota_key, quota_limit=quota, quota_ttl=60, checks=checks, now_ms=now_ms)
    assert decision.quota_ok
    return decision.outcomes


def test_the_platform_windows_slide_across_the_day_buckets_and_the_buckets_expire() -> None:
    limiter = Limiter(redis_client())
    midnight = 30_000 * FREQUENCY_BUCKET_MS
    cap = ((HOUR, 2), (DAY, 4))
    assert _decide(limiter, _checks("a", ["+1"], platform=cap), midnight - 5 * 3_600_000) == [OK]
    assert _decide(limiter, _checks("b", ["+1"], platform=cap), midnight - 1_000) == [OK]
    assert _decide(limiter, _checks("c", ["+1"], platform=cap), midnight + 1_000) == [OK]
    # The hour window holds b (yesterday) and c: a fourth account is refused by the hourly cap.
    hour_capped = _decide(limiter, _checks("d", ["+1"], platform=cap), midnight + 2_000)
    assert hour_capped == [PLATFORM_CAPPED + 1]  # the second limit, longest first
    assert _checks("d", [], platform=cap).platform_limit(hour_capped[0]) == (HOUR, 2)
    # An hour later the hour is free, and the fourth send of the last 24 hours fills the day.
    assert _decide(limiter, _checks("d", ["+1"], platform=cap), midnight + 3_602_000) == [OK]
    day_capped = _decide(limiter, _checks("e", ["+1"], platform=cap), midnight + 3_603_000)
    assert day_capped == [PLATFORM_CAPPED]
    assert _checks("e", [], platform=cap).platform_limit(day_capped[0]) == (DAY, 4)
    assert _decide(limiter, _checks("e", ["+2"], platform=cap), midnight + 3_603_000) == [OK]
    key = platform_key("verification", midnight // FREQUENCY_BUCKET_MS)
    assert key == f"mc:cap:verification:{midnight // FREQUENCY_BUCKET_MS}"  # not the account's
    assert redis_client().hget(key, "+1") is not None
    assert redis_client().pttl(key) > 0


def test_a_batch_counts_its_own_entries_and_a_refused_quota_leaves_no_platform_trace() -> None:
    limiter = Limiter(redis_client())
    now = 30_000 * FREQUENCY_BUCKET_MS + 5_000
    cap = ((HOUR, 2),)
    no_limits: tuple[tuple[int, int], ...] = ()
    refused = limiter.batch_decide(
        quota_key="q", quota_limit=1, quota_ttl=60, checks=_checks("a", ["+1", "+1"], platform=cap, limits=no_limits), now_ms=now
    )
    assert not refused.quota_ok
    assert not redis_client().exists(platform_key("verification", now // FREQUENCY_BUCKET_MS))
    # Without account limits the platform's still apply, counting the batch's own accepted entries.
    outcomes = _decide(limiter, _checks("a", ["+1", "+1", "+1", "+2"], platform=cap, limits=no_limits), now)
    assert outcomes == [OK, OK, PLATFORM_CAPPED, OK]
    assert _decide(limiter, _checks("b", ["+1"], platform=cap, limits=no_limits), now + 1) == [PLATFORM_CAPPED]


def test_the_default_caps_never_bind_before_one_accounts_own_default_limits() -> None:
    """In any window of a cap, one account alone sends at most its tightest default limit whose window
    is as long or longer; the cap must be above that."""
    for category in PLATFORM_CAP_CATEGORIES:
        own = parse_frequency_limits(DEFAULT_FREQUENCY_LIMITS[category])
        for window, maximum in cap_limits(*PLATFORM_CAP_DEFAULTS[category]):
            allowance = min((limit for own_window, limit in own if own_window >= window), default=None)
            assert allowance is not None and allowance < maximum, (category, window, maximum, allowance)


def test_one_account_alone_all_day_meets_only_its_own_limits() -> None:
    """A minute by minute stream of codes to one phone from one account, under the default caps."""
    limiter = Limiter(redis_client())
    start = 30_000 * FREQUENCY_BUCKET_MS + 3_600_000
    cap = cap_limits(*PLATFORM_CAP_DEFAULTS["verification"])
    outcomes = [_decide(limiter, _checks("a", ["+1"], platform=cap), start + minute * 61_000)[0] for minute in range(1_500)]
    assert set(outcomes) == {OK, FREQUENCY_LIMITED}  # never PLATFORM_CAPPED
    assert outcomes[:5] == [OK] * 5  # then 5 per hour, 10 per day, and the next day's after 1,417 minutes
