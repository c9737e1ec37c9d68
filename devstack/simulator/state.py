"""What the simulator remembers: every request it received, and how each provider behaves."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import secrets
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from devstack.simulator.test_keys import APNS_AUTH_KEY, FCM_SERVICE_ACCOUNT_PRIVATE_KEY, WECHAT_ENCODING_AES_KEY

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


# Well-known test credentials the simulator accepts unless SIM_<PROVIDER>_<SETTING> overrides them
# (README "Providers"); the adapters' own setting names are used as keys.
DEFAULT_CREDENTIALS: dict[str, dict[str, str]] = {
    "aliyun": {"access_key_id": "sim-aliyun-key", "access_key_secret": "sim-aliyun-secret"},
    "tencent": {"secret_id": "sim-tencent-id", "secret_key": "sim-tencent-key"},
    "volcengine": {"access_key_id": "AKLT-sim-volcengine", "secret_access_key": "sim-volcengine-secret"},
    "twilio": {"account_sid": "AC00000000000000000000000000000001", "auth_token": "sim-twilio-token"},
    # `token`/`encoding_aes_key` sign (and in safe mode encrypt) the receipts; `receipt_mode` plain|safe.
    "wechat": {
        "appid": "wx00000000005133d0",
        "secret": "sim-wechat-secret",
        "token": "sim-wechat-token",
        "encoding_aes_key": WECHAT_ENCODING_AES_KEY,
        "receipt_mode": "plain",
    },
    "wecom": {"corpid": "ww00000000005133d0", "corpsecret": "sim-wecom-secret"},
    "fcm": {
        "project_id": "sim-project",
        "client_email": "messaging@sim-project.iam.gserviceaccount.com",
        "private_key": FCM_SERVICE_ACCOUNT_PRIVATE_KEY,
    },
    "apns": {"team_id": "SIMTEAM001", "key_id": "SIMKEY0001", "private_key": APNS_AUTH_KEY},
    "jpush": {"app_key": "0000000000000000005133d0", "master_secret": "sim-jpush-master-secret"},
    "smtp": {"username": "sim", "password": "sim-smtp-password"},
}
# Access tokens the simulator issues (WeChat, WeCom, FCM's OAuth) live this long, like the real ones.
TOKEN_TTL_S = {"wechat": 7200, "wecom": 7200, "fcm": 3599}
# Memory bounds for a simulator left running under load; the oldest entries go first.
MAX_RECORDS = 100_000
MAX_SENT = 100_000
# What a lookup by number sees: the newest messages to each number.
MAX_SENT_PER_ADDRESS = 1_000


def credentials_from_env(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    return {
        provider: {name: environ.get(f"SIM_{provider}_{name}".upper(), default) for name, default in settings.items()}
        for provider, settings in DEFAULT_CREDENTIALS.items()
    }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class Record:
    provider: str
    to: str
    message_id: str | None
    request: dict[str, Any]
    provider_message_id: str | None = None
    received_at: str = field(default_factory=now_iso)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SentMessage:
    """A message the simulator accepted, as its delivery report and polling APIs see it."""

    provider: str
    provider_message_id: str
    to: str
    message_id: str | None
    template: str | None = None
    content: str | None = None
    callback_url: str | None = None
    sender: str | None = None
    sent_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    outcome: str | None = None  # "delivered" | "undelivered" once its receipt is due
    reported_at: dt.datetime | None = None


@dataclass(order=True)
class PendingReceipt:
    due: float
    seq: int
    message: SentMessage = field(compare=False)
    outcome: str = field(compare=False)
    attempt: int = field(default=0, compare=False)


class SimulatorState:
    def __init__(
        self,
        providers: list[str],
        credentials: dict[str, dict[str, str]] | None = None,
        receipt_base_url: str | None = None,
    ) -> None:
        self.providers = providers
        self.credentials = credentials or DEFAULT_CREDENTIALS
        self.receipt_base_url = receipt_base_url
        self.records: deque[Record] = deque(maxlen=MAX_RECORDS)
        self.behaviors: dict[str, Behavior] = {}
        self.sent: dict[tuple[str, str], list[SentMessage]] = {}
        self.sent_to: dict[tuple[str, str], deque[SentMessage]] = {}
        self.pull_queues: dict[str, deque[SentMessage]] = {}
        self.pending: list[PendingReceipt] = []
        self.tokens: dict[str, tuple[str, float]] = {}
        self.token_requests: Counter[str] = Counter()
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def behavior(self, provider: str) -> Behavior:
        return self.behaviors.get(provider, Behavior())

    def apply_behavior(self, provider: str, changes: dict[str, Any]) -> None:
        targets = self.providers if provider == "*" else [provider]
        for name in targets:
            self.behaviors[name] = self.behavior(name).updated(changes)

    def record(self, record: Record) -> None:
        self.records.append(record)

    def accept(self, message: SentMessage) -> None:
        """Remembers an accepted message for polling and schedules its receipt per the behavior."""
        key = (message.provider, message.provider_message_id)
        self.sent.setdefault(key, []).append(message)
        if len(self.sent) > MAX_SENT:
            del self.sent[next(iter(self.sent))]
        self.sent_to.setdefault((message.provider, message.to), deque(maxlen=MAX_SENT_PER_ADDRESS)).append(message)
        if len(self.sent_to) > MAX_SENT:
            del self.sent_to[next(iter(self.sent_to))]
        behavior = self.behavior(message.provider)
        if behavior.receipt == "none":
            return
        due = time.monotonic() + behavior.receipt_delay_ms / 1000
        heapq.heappush(self.pending, PendingReceipt(due, self.next_id(), message, behavior.receipt))

    def sent_messages(self, provider: str, provider_message_id: str) -> list[SentMessage]:
        return self.sent.get((provider, provider_message_id), [])

    def sent_to_address(self, provider: str, to: str) -> list[SentMessage]:
        """What `provider` accepted for `to`, newest first (the provider's own record, for its query APIs)."""
        return list(reversed(self.sent_to.get((provider, to), ())))

    def due_receipts(self) -> list[PendingReceipt]:
        now = time.monotonic()
        due = []
        while self.pending and self.pending[0].due <= now:
            due.append(heapq.heappop(self.pending))
        return due

    def report(self, message: SentMessage, outcome: str) -> None:
        """The carrier's report arrived: polling APIs see it from now on."""
        if message.outcome is None:
            message.outcome = outcome
            message.reported_at = dt.datetime.now(dt.UTC)
            self.pull_queues.setdefault(message.provider, deque(maxlen=MAX_SENT)).append(message)

    def retry_push(self, pending: PendingReceipt, delay: float) -> None:
        pending.attempt += 1
        pending.due = time.monotonic() + delay
        heapq.heappush(self.pending, pending)

    def issue_token(self, provider: str) -> tuple[str, int]:
        """A new access token for `provider` and its lifetime in seconds; counted for the tests."""
        self.token_requests[provider] += 1
        token = f"sim-{provider}-{secrets.token_urlsafe(24)}"
        ttl = TOKEN_TTL_S[provider]
        self.tokens[token] = (provider, time.monotonic() + ttl)
        return token, ttl

    def check_token(self, provider: str, token: str) -> Literal["valid", "expired", "invalid"]:
        issued = self.tokens.get(token)
        if issued is None or issued[0] != provider:
            return "invalid"
        return "valid" if time.monotonic() < issued[1] else "expired"

    def expire_tokens(self, provider: str) -> int:
        """Makes every token issued for `provider` expired (a test's "the token ran out")."""
        expired = [token for token, (owner, _) in self.tokens.items() if owner == provider]
        for token in expired:
            self.tokens[token] = (provider, 0.0)
        return len(expired)

    def messages(self, to: str | None) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.records if to is None or r.to == to]

    def clear(self) -> None:
        self.records.clear()

    def reset(self) -> None:
        self.records.clear()
        self.behaviors.clear()
        self.sent.clear()
        self.sent_to.clear()
        self.pull_queues.clear()
        self.pending.clear()
        self.tokens.clear()
        self.token_requests.clear()
