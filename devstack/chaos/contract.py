"""Scenarios about the contract under concurrency and attack rather than a broken process: one
Idempotency-Key raced by 50 requests, 200 sends racing for a quota of 100, forged and replayed
provider receipts."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from devstack.chaos.checker import Expected
from devstack.chaos.traffic import SMS_TEMPLATE, Api, Context, Load, drive, error_code, fresh_number
from devstack.simulator.receipts import PUSHERS
from devstack.simulator.state import DEFAULT_CREDENTIALS, SentMessage, SimulatorState


def _post_until_answered(api: Api, body: object, key: str) -> httpx.Response | None:
    """One send, repeated with its key after a dropped connection or a 5xx (a careful client)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            response = api.request("POST", "/api/v1/messages", body, {"Idempotency-Key": key})
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code < 500:
            return response
        time.sleep(0.2)
    return None


def one_idempotency_key(ctx: Context) -> tuple[Load, str, list[str]]:
    """50 concurrent requests, one key, one body: one send, and every answer the first one, byte for byte."""
    phones = [fresh_number() for _ in range(5)]
    body = {"template": SMS_TEMPLATE, "to": [{"phone": p, "params": {"n": p[-4:]}} for p in phones]}
    key = uuid.uuid4().hex
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: _post_until_answered(ctx.api, body, key), range(50)))
    bodies = Counter(a.content for a in answers if a is not None and a.status_code == 202)
    others = Counter(
        ("none" if a is None else f"{a.status_code} {error_code(a)}") for a in answers if a is None or a.status_code != 202
    )
    wrongs = []
    if len(bodies) != 1:
        wrongs.append(f"{len(bodies)} different 202 bodies for one key")
    if others:
        wrongs.append(f"answers other than 202: {dict(others)}")
    load = Load()
    if bodies:
        first = httpx.Response(202, content=next(iter(bodies))).json()["messages"]
        load.add([Expected(p, m["id"], "sms") for p, m in zip(phones, first, strict=True)])
    else:
        load.add([Expected(p, None, "sms") for p in phones])
    return load, "50 concurrent identical requests (5 numbers) with one Idempotency-Key", wrongs


def quota(ctx: Context) -> tuple[Load, str, list[str]]:
    """200 concurrent one-number sends by an account with a daily quota of 100: exactly 100 accepted."""
    api = Api(ctx.stack.api_url, ctx.stack.create_account(f"chaos-quota-{uuid.uuid4().hex[:6]}", daily_quota=100))
    api.templates()
    phones = [fresh_number() for _ in range(200)]

    def one(phone: str) -> httpx.Response | None:
        body = {"template": SMS_TEMPLATE, "to": {"phone": phone, "params": {"n": phone[-4:]}}}
        return _post_until_answered(api, body, uuid.uuid4().hex)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, phones))
    load = Load(account=api)
    accepted = 0
    outcomes: Counter[str] = Counter()
    for phone, answer in zip(phones, answers, strict=True):
        if answer is not None and answer.status_code == 202:
            [message] = answer.json()["messages"]
            accepted += message["status"] == "queued"
            load.add([Expected(phone, message["id"] if message["status"] == "queued" else None, "sms")])
        else:
            outcomes["none" if answer is None else f"{answer.status_code} {error_code(answer)}"] += 1
            load.add([Expected(phone, None, "sms")])
    wrongs = []
    if accepted != 100:
        wrongs.append(f"{accepted} of 200 accepted against a quota of 100")
    if set(outcomes) - {"429 quota_exceeded"}:
        wrongs.append(f"refusals other than 429 quota_exceeded: {dict(outcomes)}")
    ctx.api.answers.update(api.answers)
    return load, f"200 concurrent sends, quota 100: {accepted} accepted, {dict(outcomes)}", wrongs


def receipts(ctx: Context) -> tuple[Load, str, list[str]]:
    """60 SMS delivered; then for each, a forged report (wrong URL token, or a bad Twilio signature)
    saying `undelivered` must be refused with 401, and its real reports replayed — `delivered` twice,
    then an `undelivered` — must change nothing: a delivered message stays delivered."""
    load = drive(ctx.api, sms=60, codes=0, seconds=0)
    ids = {item.message_id for item in load.expected if item.message_id}
    numbers = {item.number for item in load.expected}
    before = _statuses_when_settled(ctx.api, ids)
    sent = [
        SentMessage(r["provider"], r["provider_message_id"], r["to"], r["message_id"])
        for r in ctx.stack.sim_records()
        if r["to"] in numbers
    ]
    base = f"{ctx.stack.receipts_url}/api/v1/receipts/t/"
    forged = _posts(SimulatorState(list(PUSHERS), DEFAULT_CREDENTIALS, f"{base}forged-{uuid.uuid4().hex}/"), sent, "undelivered")
    forged += _posts(
        SimulatorState(["twilio"], DEFAULT_CREDENTIALS, f"{ctx.stack.receipts_url}/api/v1/receipts/"),
        [SentMessage("twilio", f"SM{uuid.uuid4().hex}", m.to, m.message_id) for m in sent[:10]],
        "undelivered",
        forge_signature=True,
    )
    real = SimulatorState(list(PUSHERS), DEFAULT_CREDENTIALS, f"{base}{ctx.stack.receipt_token}/")
    replayed = _posts(real, sent, "delivered") + _posts(real, sent, "delivered") + _posts(real, sent, "undelivered")
    time.sleep(5)  # reports are matched by the receipts worker
    after = _statuses_when_settled(ctx.api, ids)
    wrongs = []
    if set(forged) != {401}:
        wrongs.append(f"forged reports answered {dict(Counter(forged))} (expected 401 only)")
    if any(status >= 300 for status in replayed):
        wrongs.append(f"replayed reports answered {dict(Counter(replayed))}")
    changed = [i for i in ids if before.get(i) == "delivered" and after.get(i) != "delivered"]
    if changed:
        wrongs.append(f"{len(changed)} delivered messages changed by forged or replayed reports: {changed[:3]}")
    did = f"{len(forged)} forged reports, {len(replayed)} replayed ones, for {len(sent)} delivered SMS"
    return load, did, wrongs


def _posts(state: SimulatorState, messages: list[SentMessage], outcome: str, *, forge_signature: bool = False) -> list[int]:
    """Each provider's own report for `messages` with `outcome`, POSTed; the HTTP statuses."""
    statuses = []
    for message in messages:
        message.outcome = outcome
    with httpx.Client(timeout=30) as client:
        for kind in {m.provider for m in messages}:
            for push in PUSHERS[kind](state, [m for m in messages if m.provider == kind]):
                headers = dict(push.headers)
                if forge_signature:
                    headers["X-Twilio-Signature"] = "Zm9yZ2VkLXNpZ25hdHVyZQ=="
                statuses.append(client.post(push.url, content=push.body, headers=headers).status_code)
    return statuses


def _statuses_when_settled(api: Api, ids: set[str]) -> dict[str, str]:
    """Each message's status once all are delivered, or after 60 s."""
    deadline = time.monotonic() + 60
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = {}
        for message_id in ids:
            response = api.client.get(f"/api/v1/messages/{message_id}")
            if response.status_code == 200:
                statuses[message_id] = response.json()["status"]
        if all(statuses.get(i) == "delivered" for i in ids):
            break
        time.sleep(2)
    return statuses
