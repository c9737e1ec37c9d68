"""What the simulator remembers: every request it received, and how each provider behaves."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

ERROR_KINDS = ("http_500", "timeout", "throttle", "invalid_number")
RECEIPT_KINDS = ("delivered", "undelivered", "none")


@dataclass
class Behavior:
    fail_rate: float = 0.0
    error: str = "http_500"
    latency_ms: int = 0
    receipt: str = "delivered"
    receipt_delay_ms: int = 200

    def updated(self, changes: dict[str, Any]) -> Behavior:
        return Behavior(**(asdict(self) | changes))


class BehaviorError(ValueError):
    pass


def parse_behavior_changes(body: Any) -> tuple[str, dict[str, Any]]:
    """Validates a `POST /_sim/behavior` body; returns (provider or "*", the fields it sets)."""
    if not isinstance(body, dict):
        raise BehaviorError("body must be a JSON object")
    provider = body.get("provider", "*")
    if not isinstance(provider, str) or not provider:
        raise BehaviorError("provider must be a provider name or '*'")
    changes: dict[str, Any] = {}
    if "fail_rate" in body:
        rate = body["fail_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise BehaviorError("fail_rate must be a number from 0.0 to 1.0")
        changes["fail_rate"] = float(rate)
    if "error" in body:
        if body["error"] not in ERROR_KINDS:
            raise BehaviorError(f"error must be one of {', '.join(ERROR_KINDS)}")
        changes["error"] = body["error"]
    if "receipt" in body:
        if body["receipt"] not in RECEIPT_KINDS:
            raise BehaviorError(f"receipt must be one of {', '.join(RECEIPT_KINDS)}")
        changes["receipt"] = body["receipt"]
    for name in ("latency_ms", "receipt_delay_ms"):
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 600_000:
                raise BehaviorError(f"{name} must be an integer from 0 to 600000")
            changes[name] = value
    unknown = set(body) - {"provider", "fail_rate", "error", "latency_ms", "receipt", "receipt_delay_ms"}
    if unknown:
        raise BehaviorError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return provider, changes


@dataclass
class Record:
    provider: str
    to: str
    message_id: str | None
    request: dict[str, Any]
    received_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class SimulatorState:
    def __init__(self, providers: list[str]) -> None:
        self.providers = providers
        self.records: list[Record] = []
        self.behaviors: dict[str, Behavior] = {}

    def behavior(self, provider: str) -> Behavior:
        return self.behaviors.get(provider, Behavior())

    def apply_behavior(self, provider: str, changes: dict[str, Any]) -> None:
        targets = self.providers if provider == "*" else [provider]
        for name in targets:
            self.behaviors[name] = self.behavior(name).updated(changes)

    def record(self, record: Record) -> None:
        self.records.append(record)

    def messages(self, to: str | None) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.records if to is None or r.to == to]

    def clear(self) -> None:
        self.records.clear()

    def reset(self) -> None:
        self.records.clear()
        self.behaviors.clear()
