"""JPush REST API v3 as the simulator serves it: `POST /v3/push` with basic auth appKey:masterSecret."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from aiohttp import web

from devstack.simulator.common import STATE_KEY, json_response, simulate
from devstack.simulator.state import Record

PROVIDER = "jpush"
PATH = "/v3/push"


def _error(status: int, code: int, message: str, msg_id: int | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if msg_id is not None:
        body["msg_id"] = str(msg_id)
    return json_response(body, status)


def _authenticated(request: web.Request) -> bool:
    credentials = request.app[STATE_KEY].credentials[PROVIDER]
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        app_key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return app_key == credentials["app_key"] and hmac.compare_digest(secret.encode(), credentials["master_secret"].encode())


async def push(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not _authenticated(request):
        return _error(401, 1004, "Authen failed")
    try:
        body: Any = json.loads(await request.read())
    except ValueError:
        body = None
    if not isinstance(body, dict) or "platform" not in body or not isinstance(body.get("notification"), dict):
        return _error(400, 1003, "Parameter value is invalid")
    audience = body.get("audience")
    ids = audience.get("registration_id") if isinstance(audience, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        return _error(400, 1002, "Missing parameter: audience.registration_id")
    msg_id = state.next_id() + 18_100_000_000_000_000

    def accept() -> web.Response:
        for registration_id in ids:
            state.record(Record(PROVIDER, registration_id, None, body, provider_message_id=str(msg_id)))
        return json_response({"sendno": "0", "msg_id": str(msg_id)})

    def fail(kind: str) -> web.Response:
        if kind == "throttle":
            return _error(429, 2002, "Rate limit exceeded", msg_id)
        if kind == "invalid_number":
            return _error(400, 1011, "cannot find user by this audience or has been inactive for more than 255 days", msg_id)
        return _error(500, 1000, "Server error", msg_id)

    return await simulate(request, PROVIDER, accept=accept, fail=fail)
