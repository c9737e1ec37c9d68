"""The WeCom (Enterprise WeChat) API as the simulator serves it: `GET /cgi-bin/gettoken` and `POST
/cgi-bin/message/send` (text and textcard). Paths differ from the official account's, so both share
the simulator's base URL as on the real hosts.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from aiohttp import web

from devstack.simulator.common import STATE_KEY, delay, json_response, simulate
from devstack.simulator.state import Record

PROVIDER = "wecom"
AUTH_PATH = "/cgi-bin/gettoken"
SEND_PATH = "/cgi-bin/message/send"
MAX_USERS = 1000
# A userid the simulator treats as unknown to the company, whatever the behavior.
UNKNOWN_USER_PREFIX = "nobody"
TOKEN_ERRORS = {"invalid": (40014, "invalid access_token"), "expired": (42001, "access_token expired")}


def _error(code: int, message: str, **fields: str) -> web.Response:
    return json_response({"errcode": code, "errmsg": f"{message}, hint: [{secrets.token_hex(8)}]", **fields})


async def gettoken(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    credentials = state.credentials[PROVIDER]
    if request.query.get("corpid") != credentials["corpid"]:
        return _error(40013, "invalid corpid")
    if not hmac.compare_digest(request.query.get("corpsecret", "").encode(), credentials["corpsecret"].encode()):
        return _error(40001, "invalid secret")
    await delay(state, PROVIDER)
    access_token, ttl = state.issue_token(PROVIDER)
    return json_response({"errcode": 0, "errmsg": "ok", "access_token": access_token, "expires_in": ttl})


def _content(body: dict[str, Any]) -> str | None:
    if body.get("msgtype") == "text" and isinstance(body.get("text"), dict):
        return body["text"].get("content") if isinstance(body["text"].get("content"), str) else None
    card = body.get("textcard")
    if (
        body.get("msgtype") == "textcard"
        and isinstance(card, dict)
        and all(isinstance(card.get(k), str) for k in ("title", "url"))
    ):
        return str(card.get("description") or "")
    return None


async def message_send(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    checked = state.check_token(PROVIDER, request.query.get("access_token", ""))
    if checked != "valid":
        return _error(*TOKEN_ERRORS[checked])
    try:
        body: Any = json.loads(await request.read())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _error(44004, "empty content or not JSON")
    if not isinstance(body.get("agentid"), int):
        return _error(40056, "invalid agentid")
    if _content(body) is None:
        return _error(40008, "invalid message type")
    users = [user for user in str(body.get("touser") or "").split("|") if user]
    if not users or len(users) > MAX_USERS:
        return _error(40031, "invalid user list")

    def accept_with(invalid: list[str]) -> web.Response:
        valid = [user for user in users if user not in invalid]
        if not valid:
            return _error(81013, "user & party & tag all invalid", invaliduser="|".join(invalid))
        msgid = secrets.token_urlsafe(32)
        for user in valid:
            state.record(Record(PROVIDER, user, None, body, provider_message_id=f"{msgid}:{user}"))
        return json_response(
            {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "invalidparty": "", "invalidtag": "", "msgid": msgid}
        )

    def fail(kind: str) -> web.Response:
        if kind == "throttle":
            return _error(45033, "api concurrent out of limit")
        if kind == "invalid_number":
            return accept_with(users)
        return _error(-1, "system busy")

    unknown = [user for user in users if user.startswith(UNKNOWN_USER_PREFIX)]
    return await simulate(request, PROVIDER, accept=lambda: accept_with(unknown), fail=fail)
