"""Traffic through the public API, sent as a careful client sends it: every message send carries an
`Idempotency-Key` and is repeated with it after a dropped connection, a 5xx or a rate limit until
an answer comes; a verification code (no key in the contract) is asked again only when the request
certainly changed nothing (the connection was refused, 503, 429). Every answer is counted."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.chaos.checker import Expected
from devstack.chaos.stack import Stack

SMS_TEMPLATE = "chaos_notice"
CODE_TEMPLATE = "chaos_code"
PENDING_STATUSES = ("scheduled", "queued", "sending", "retry_wait")
# Mainland numbers (the domestic providers, Twilio as their failover), each used once in a run so
# that a number stands for one person and one message: what reached it is what that person got.
_numbers = itertools.count(random.randrange(10_000_000, 80_000_000))


def fresh_number() -> str:
    return f"+86138{next(_numbers):08d}"


@dataclass
class Api:
    base_url: str
    key: str
    answers: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=httpx.Timeout(15.0, connect=3.0),
            limits=httpx.Limits(max_connections=64),
        )

    def _count(self, answer: str) -> None:
        with self.lock:
            self.answers[answer] += 1

    def request(
        self, method: str, path: str, body: object | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request; its answer counted by status (`conn` for a dropped or refused connection)."""
        try:
            response = self.client.request(method, path, json=body, headers=headers)
        except httpx.TransportError:
            self._count("conn")
            raise
        self._count(str(response.status_code))
        return response

    def templates(self) -> None:
        ids = {"aliyun": "SMS_900", "tencent": "9001", "volcengine": "ST_00000900"}
        for code, fields in (
            (SMS_TEMPLATE, {"category": "transactional", "content": "Chaos notice {{n}} for you."}),
            (CODE_TEMPLATE, {"category": "verification", "content": "Your chaos code is {{code}}."}),
        ):
            body = {"code": code, "name": code, "channel": "sms", "sms_signature": "MC", "provider_template_ids": ids, **fields}
            response = self.request("POST", "/api/v1/templates", body)
            if response.status_code not in (201, 400):  # 400: it exists (a second scenario run)
                raise RuntimeError(f"template {code}: {response.status_code} {response.text[:300]}")

    def send(self, phones: list[str], *, deadline: float, key: str | None = None) -> tuple[int, Any]:
        """POST /messages for `phones` (one SMS each), repeated with one key until an answer that is
        not a fault; (status, body), status 0 when the deadline passed without one."""
        body = {"template": SMS_TEMPLATE, "to": [{"phone": p, "params": {"n": p[-4:]}} for p in phones]}
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        pause = 0.2
        while time.monotonic() < deadline:
            try:
                response = self.request("POST", "/api/v1/messages", body, headers)
            except httpx.TransportError:
                response = None
            if response is not None and not _worth_repeating(response):
                return response.status_code, response.json()
            time.sleep(pause)
            pause = min(2.0, pause * 2)
        return 0, None

    def verify(self, phone: str, *, deadline: float) -> str | None:
        """POST /verifications; the code's message id, or None when no answer says what happened."""
        pause = 0.2
        while time.monotonic() < deadline:
            try:
                response = self.request("POST", "/api/v1/verifications", {"to": {"phone": phone}, "template": CODE_TEMPLATE})
            except httpx.ConnectError:
                response = None  # never reached the server: safe to ask again
            except httpx.TransportError:
                return None  # it may have been accepted: asking again would be a second code
            if response is not None and response.status_code == 202:
                return str(response.json()["message_id"])
            if response is not None and not _worth_repeating(response):
                return None
            time.sleep(pause)
            pause = min(2.0, pause * 2)
        return None

    def messages_since(self, since: dt.datetime, **filters: str) -> Iterator[dict[str, Any]]:
        params: dict[str, str] = {"created_after": since.isoformat(), "limit": "500", **filters}
        while True:
            response = self.client.get("/api/v1/messages", params=params)
            response.raise_for_status()
            page = response.json()
            yield from page["results"]
            if not page["next"]:
                return
            params["cursor"] = page["next"]

    def pending_numbers(self, since: dt.datetime) -> set[str] | None:
        """The numbers of messages made since `since` that wait for a provider (None: no answer)."""
        try:
            return {str(m["to"].get("phone")) for status in PENDING_STATUSES for m in self.messages_since(since, status=status)}
        except (httpx.HTTPError, ValueError):
            return None


@dataclass
class Context:
    """What a scenario works with: the stack and the API as the suite's account."""

    stack: Stack
    api: Api


def _worth_repeating(response: httpx.Response) -> bool:
    if response.status_code >= 500:
        return True
    return response.status_code == 429 and error_code(response) == "rate_limited"


def error_code(response: httpx.Response) -> str | None:
    """The contract's error `code`; None for a body that is not the contract's JSON."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


@dataclass
class Load:
    """What a scenario sent: the messages to check, and the numbers whose request's fate is unknown."""

    expected: list[Expected] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The account that sent them, when not the suite's own (the API shows an account its messages only).
    account: Api | None = None

    def add(self, items: list[Expected]) -> None:
        with self.lock:
            self.expected.extend(items)


def send_sms_batch(api: Api, load: Load, phones: list[str], deadline: float) -> None:
    try:
        status, body = api.send(phones, deadline=deadline)
    except Exception:  # a client-side failure must not take the numbers out of the check
        status, body = 0, None
    if status == 202:
        outcomes = body["messages"]
        load.add(
            [Expected(p, m["id"] if m["status"] == "queued" else None, "sms") for p, m in zip(phones, outcomes, strict=True)]
        )
    else:
        load.add([Expected(p, None, "sms") for p in phones])


def send_code(api: Api, load: Load, deadline: float) -> None:
    phone = fresh_number()
    try:
        message_id = api.verify(phone, deadline=deadline)
    except Exception:  # a client-side failure must not take the number out of the check
        message_id = None
    load.add([Expected(phone, message_id, "code")])


def drive(api: Api, *, sms: int, codes: int, seconds: float, batch: int = 10, threads: int = 6) -> Load:
    """`sms` SMS in batches of `batch` and `codes` verification codes, spread evenly over `seconds`
    (0: all at once), from `threads` concurrent clients. Returns when every request has an answer or
    gave up (each has two minutes)."""
    load = Load()
    jobs: list[tuple[str, list[str]]] = [
        ("sms", [fresh_number() for _ in range(min(batch, sms - i))]) for i in range(0, sms, batch)
    ]
    jobs += [("code", [])] * codes
    random.shuffle(jobs)
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for index, (kind, phones) in enumerate(jobs):
            due = started + seconds * index / max(1, len(jobs))
            time.sleep(max(0.0, due - time.monotonic()))
            deadline = time.monotonic() + 120
            if kind == "sms":
                pool.submit(send_sms_batch, api, load, phones, deadline)
            else:
                pool.submit(send_code, api, load, deadline)
    return load
