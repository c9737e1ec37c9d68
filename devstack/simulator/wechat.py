"""The WeChat official account API as the simulator serves it: `GET /cgi-bin/token`, `POST
/cgi-bin/message/template/send`, and the TEMPLATESENDJOBFINISH event pushed to `<receipt base>wechat`.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from apps.dispatch.providers.wechat import encrypt, signature
from devstack.simulator.common import STATE_KEY, Push, delay, json_response, receipt_url, simulate
from devstack.simulator.state import Record, SentMessage, SimulatorState

PROVIDER = "wechat"
AUTH_PATH = "/cgi-bin/token"
SEND_PATH = "/cgi-bin/message/template/send"
# The account's own id (gh_…) is the ToUserName of every event it receives.
ACCOUNT_ID = "gh_000000005133"
TOKEN_ERRORS = {
    "invalid": (40001, "invalid credential, access_token is invalid or not latest"),
    "expired": (42001, "access_token expired"),
}


def _error(code: int, message: str) -> web.Response:
    # The Weixin APIs answer every error with HTTP 200 and a non-zero errcode.
    return json_response({"errcode": code, "errmsg": f"{message} rid: {secrets.token_hex(12)}"})


async def token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    credentials = state.credentials[PROVIDER]
    if request.query.get("grant_type") != "client_credential":
        return _error(40002, "invalid grant_type")
    if request.query.get("appid") != credentials["appid"]:
        return _error(40013, "invalid appid")
    if not hmac.compare_digest(request.query.get("secret", "").encode(), credentials["secret"].encode()):
        return _error(40001, "invalid credential, access_token is invalid or not latest")
    await delay(state, PROVIDER)
    access_token, ttl = state.issue_token(PROVIDER)
    return json_response({"access_token": access_token, "expires_in": ttl})


async def template_send(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    checked = state.check_token(PROVIDER, request.query.get("access_token", ""))
    if checked != "valid":
        return _error(*TOKEN_ERRORS[checked])
    try:
        body: Any = json.loads(await request.read())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _error(47001, "data format error")
    to, template_id, data = body.get("touser"), body.get("template_id"), body.get("data")
    if not isinstance(to, str) or not to:
        return _error(40003, "invalid openid")
    if not isinstance(template_id, str) or not template_id:
        return _error(40037, "invalid template_id")
    if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values()):
        return _error(47003, "argument invalid! data.value invalid")
    message_id = body.get("client_msg_id") if isinstance(body.get("client_msg_id"), str) else None

    def accept() -> web.Response:
        msgid = state.next_id() + 2_000_000_000
        state.record(Record(PROVIDER, to, message_id, body, provider_message_id=str(msgid)))
        state.accept(SentMessage(PROVIDER, str(msgid), to, message_id, template=template_id))
        return json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    def fail(kind: str) -> web.Response:
        if kind == "throttle":
            return _error(45009, "reach max api daily quota limit")
        if kind == "invalid_number":
            return _error(40003, "invalid openid")
        return _error(-1, "system error")

    return await simulate(request, PROVIDER, accept=accept, fail=fail)


def event_xml(message: SentMessage, *, created: int) -> bytes:
    status = "success" if message.outcome == "delivered" else "failed:user block"
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><FromUserName><![CDATA[{message.to}]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{message.provider_message_id}</MsgID>"
        f"<Status><![CDATA[{status}]]></Status></xml>"
    ).encode()


def signed_push(credentials: dict[str, str], url: str, xml: bytes, *, openid: str) -> tuple[str, bytes]:
    """The URL (with its signature query) and body WeChat posts: plain mode, or safe mode (AES)."""
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
    query = {"signature": signature(credentials["token"], timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    query["openid"] = openid
    if credentials.get("receipt_mode") == "safe":
        encrypted = encrypt(xml, encoding_aes_key=credentials["encoding_aes_key"], appid=credentials["appid"])
        query |= {"encrypt_type": "aes", "msg_signature": signature(credentials["token"], timestamp, nonce, encrypted)}
        xml = f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode(query)}", xml


def pushes(state: SimulatorState, messages: list[SentMessage]) -> list[Push]:
    """One signed XML event per message, to `<receipt base>wechat`."""
    url = receipt_url(state, PROVIDER)
    if url is None:
        return []
    credentials = state.credentials[PROVIDER]
    result = []
    for message in messages:
        signed_url, body = signed_push(credentials, url, event_xml(message, created=int(time.time())), openid=message.to)
        result.append(Push(signed_url, body, {"Content-Type": "text/xml"}, [message]))
    return result
