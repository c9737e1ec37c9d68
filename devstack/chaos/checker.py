"""The per-message checker: what the API says about each message joined with what the simulated
providers accepted for its number.

Every number is used for one message only (traffic.fresh_number), so the simulator's records for a
number are what that person received, whichever message id (ours, a failover's) they carry:
- lost: accepted, and no provider has it while the API says it went out, or the API no longer
  knows the message;
- stuck: still waiting (scheduled, queued, sending, retry_wait) after the scenario's deadline;
- sent twice by one provider: two or more accepted requests for the number at one provider;
- sent to one person by two providers: records for the number at two or more providers (SMS; for
  verification codes counted apart, `codes_twice`: a hedged or failed-over code may arrive twice by
  design, both valid until one is used);
- failed: final without reaching anyone (failed, expired) — the API's honest answer, not a loss;
- problems: anything else a user would call wrong (a number reached although the API says the
  message failed or was never accepted), one line each.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PENDING = frozenset({"scheduled", "queued", "sending", "retry_wait"})
WENT_OUT = frozenset({"sent", "delivered", "undelivered"})
NOT_SENT = frozenset({"failed", "expired", "canceled"})


@dataclass(frozen=True)
class Expected:
    """One message asked for: its number, its id when an answer said `queued` (None when the request
    was refused or its answer never came), and its kind (`sms` or `code`)."""

    number: str
    message_id: str | None
    kind: str


@dataclass
class Figures:
    messages: int = 0
    out: int = 0
    failed: int = 0
    lost: int = 0
    stuck: int = 0
    dup_one_provider: int = 0
    dup_to_person: int = 0
    codes_twice: int = 0
    # Accept → sent of each verification code that went out, seconds (the "p99 < 2 s").
    code_seconds: list[float] = field(default_factory=list)
    # Wrongs no column counts (a scenario's own checks add theirs); `notes` explain the counted ones.
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def code_p99(self) -> float | None:
        return p99(self.code_seconds)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.stuck or self.dup_one_provider or self.dup_to_person or self.problems)


def check(expected: Iterable[Expected], api_messages: Iterable[dict[str, Any]], records: Iterable[dict[str, Any]]) -> Figures:
    by_id = {m["id"]: m for m in api_messages}
    by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in by_id.values():
        by_number[str(message["to"].get("phone"))].append(message)
    received: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        received[record["to"]][record["provider"]] += 1

    figures = Figures()
    for item in expected:
        providers = received.get(item.number, Counter())
        _count_duplicates(figures, item, providers)
        if item.message_id is not None:
            known = by_id.get(item.message_id)
            if known is None:
                figures.messages += 1
                figures.lost += 1
                figures.notes.append(f"lost {item.message_id}: accepted, unknown to the API now")
            else:
                _judge(figures, known, providers, item.kind)
            continue
        # Refused, or the answer never came: whatever the API stored for the number is judged the same.
        stored = [m for m in by_number.get(item.number, []) if m["status"] not in ("rejected", "suppressed")]
        if not stored and providers:
            figures.problems.append(f"{_masked(item.number)}: sent by {_names(providers)}, no message for it in the API")
        for message in stored:
            _judge(figures, message, providers, item.kind)
    return figures


def p99(values: list[float]) -> float | None:
    """The nearest-rank 99th percentile (of 20 codes: the slowest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def _judge(figures: Figures, message: dict[str, Any], providers: Counter[str], kind: str) -> None:
    figures.messages += 1
    status = message["status"]
    if kind == "code" and message.get("sent_at"):
        sent = dt.datetime.fromisoformat(message["sent_at"]) - dt.datetime.fromisoformat(message["created_at"])
        figures.code_seconds.append(sent.total_seconds())
    if status in PENDING:
        figures.stuck += 1
    elif providers:
        figures.out += 1
        if status in NOT_SENT:
            figures.problems.append(f"{message['id']} is {status}, yet {_names(providers)} sent it")
    elif status in WENT_OUT:
        figures.lost += 1
        figures.notes.append(f"lost {message['id']}: {status} through {message.get('provider')}, no provider has it")
    else:
        figures.failed += 1


def _count_duplicates(figures: Figures, item: Expected, providers: Counter[str]) -> None:
    if any(count > 1 for count in providers.values()):
        figures.dup_one_provider += 1
        figures.notes.append(f"twice {_masked(item.number)}: sent twice by one provider ({_names(providers)})")
    if len(providers) > 1:
        if item.kind == "code":
            figures.codes_twice += 1
        else:
            figures.dup_to_person += 1
            figures.notes.append(f"two providers {_masked(item.number)} ({item.message_id}): {_names(providers)}")


def _masked(number: str) -> str:
    return number[:-4] + "****"


def _names(providers: Counter[str]) -> str:
    return ", ".join(f"{name}x{count}" for name, count in sorted(providers.items()))
