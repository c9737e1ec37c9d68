"""The chaos suite's per-message checker (devstack/chaos/checker.py) on made-up API and simulator
views: each kind of wrong lands in its own column, and what is right counts as nothing."""

from __future__ import annotations

from typing import Any

from devstack.chaos.checker import Expected, check


def _message(message_id: str, number: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": message_id, "to": {"phone": number}, "status": status, "provider": "sim-aliyun", **extra}


def _record(number: str, provider: str, message_id: str | None = None) -> dict[str, Any]:
    return {"to": number, "provider": provider, "message_id": message_id}


def test_each_wrong_lands_in_its_own_column() -> None:
    expected = [
        Expected("+8613800000001", "m1", "sms"),  # delivered once: fine
        Expected("+8613800000002", "m2", "sms"),  # the API says sent, no provider has it: lost
        Expected("+8613800000003", "m3", "sms"),  # still waiting: stuck
        Expected("+8613800000004", "m4", "sms"),  # one provider twice, another once
        Expected("+8613800000005", "m5", "code"),  # a code through two providers: counted apart
        Expected("+8613800000006", "m6", "sms"),  # failed, and nobody got it: honest
        Expected("+8613800000007", "m7", "sms"),  # failed, yet a provider took it: wrong status
        Expected("+8613800000008", "m8", "sms"),  # accepted, then forgotten by the API: lost
        Expected("+8613800000009", None, "sms"),  # answer never came, yet sent, nothing stored
    ]
    api = [
        _message("m1", "+8613800000001", "delivered"),
        _message("m2", "+8613800000002", "sent"),
        _message("m3", "+8613800000003", "retry_wait"),
        _message("m4", "+8613800000004", "delivered"),
        _message(
            "m5", "+8613800000005", "delivered", created_at="2026-01-01T00:00:00+00:00", sent_at="2026-01-01T00:00:01.5+00:00"
        ),
        _message("m6", "+8613800000006", "failed"),
        _message("m7", "+8613800000007", "failed"),
    ]
    records = [
        _record("+8613800000001", "aliyun", "m1"),
        _record("+8613800000004", "tencent", "m4"),
        _record("+8613800000004", "tencent", "m4"),
        _record("+8613800000004", "aliyun", "m4"),
        _record("+8613800000005", "tencent", "m5"),
        _record("+8613800000005", "aliyun", "m5-failover"),
        _record("+8613800000007", "aliyun", "m7"),
        _record("+8613800000009", "aliyun"),
    ]
    figures = check(expected, api, records)
    assert (figures.messages, figures.out, figures.failed) == (8, 4, 1)
    assert (figures.lost, figures.stuck) == (2, 1)
    assert (figures.dup_one_provider, figures.dup_to_person, figures.codes_twice) == (1, 1, 1)
    assert figures.code_p99 == 1.5
    assert len(figures.problems) == 2
    assert "m7 is failed" in figures.problems[0] and "no message for it in the API" in figures.problems[1]
    assert not figures.clean


def test_a_refused_request_that_sent_nothing_is_no_wrong() -> None:
    figures = check([Expected("+8613800000010", None, "sms")], [], [])
    assert figures.clean and figures.messages == 0
