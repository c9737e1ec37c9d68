"""Twilio's Messages resource (API 2010-04-01) as the simulator serves it, and its StatusCallback."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
import uuid
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from apps.dispatch.providers.twilio import compute_signature
from devstack.simulator.common import STATE_KEY, Push, json_response, receipt_url, simulate
from devstack.simulator.state import Record, SentMessage, SimulatorState

PROVIDER = "twilio"
E164 = re.compile(r"^\+\d{6,15}$")
PATH = "/2010-04-01/Accounts/{account_sid}/Messages.json"


def _error(status: int, code: int, message: str) -> web.Response:
    return json_response(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}, status
    )


def _authenticated(request: web.Request) -> bool:
    credentials = request.app[STATE_KEY].credentials[PROVIDER]
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        sid, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return sid == credentials["account_sid"] == request.match_info["account_sid"] and hmac.compare_digest(
        token.encode(), credentials["auth_token"].encode()
    )


async def create_message(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not _authenticated(request):
        return _error(401, 20003, "Authenticate")
    try:
        fields = dict(parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True))
    except ValueError:
        return _error(400, 21000, "The request body is not valid form data.")
    to = fields.get("To", "")
    sender = fields.get("From") or fields.get("MessagingServiceSid")
    if not to:
        return _error(400, 21604, "A 'To' phone number is required.")
    if not sender:
        return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
    if not fields.get("Body"):
        return _error(400, 21602, "Message body is required.")
    if not E164.match(to):
        return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    account_sid = request.match_info["account_sid"]
    # Twilio's StatusCallback carries our id back in its query; the simulator reads it from there.
    callback = fields.get("StatusCallback") or None
    message_id = dict(parse_qsl(callback.partition("?")[2])).get("message_id") if callback else None

    def accept() -> web.Response:
        sid = f"SM{uuid.uuid4().hex}"
        state.record(Record(PROVIDER, to, message_id, fields, provider_message_id=sid))
        state.accept(SentMessage(PROVIDER, sid, to, message_id, content=fields["Body"], callback_url=callback, sender=sender))
        now = format_datetime(dt.datetime.now(dt.UTC), usegmt=True)
        return json_response(
            {
                "sid": sid,
                "account_sid": account_sid,
                "to": to,
                "from": fields.get("From"),
                "messaging_service_sid": fields.get("MessagingServiceSid"),
                "body": fields["Body"],
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "date_created": now,
                "date_updated": now,
                "date_sent": None,
                "error_code": None,
                "error_message": None,
                "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            },
            201,
        )

    def fail(kind: str) -> web.Response:
        if kind == "throttle":
            return _error(429, 20429, "Too Many Requests")
        if kind == "invalid_number":
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        return _error(500, 20500, "Internal Server Error")

    return await simulate(request, PROVIDER, accept=accept, fail=fail)


def pushes(state: SimulatorState, messages: list[SentMessage]) -> list[Push]:
    """One signed form POST per message, to its StatusCallback or else `<receipt base>twilio`."""
    credentials = state.credentials[PROVIDER]
    result = []
    for message in messages:
        url = message.callback_url or receipt_url(state, PROVIDER)
        if url is None:
            continue
        fields = _report(credentials["account_sid"], message)
        signature = compute_signature(credentials["auth_token"], url, list(fields.items()))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        result.append(Push(url, urlencode(fields).encode(), headers, [message]))
    return result


def _report(account_sid: str, message: SentMessage) -> dict[str, Any]:
    status = "delivered" if message.outcome == "delivered" else "undelivered"
    fields = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "MessageSid": message.provider_message_id,
        "SmsSid": message.provider_message_id,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": message.to,
        "From": message.sender or "",
    }
    if status == "undelivered":
        fields["ErrorCode"] = "30003"
    return fields
