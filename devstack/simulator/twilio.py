"""Twilio's Messages resource (API 2010-04-01) as the simulator serves it, and its StatusCallback."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import operator
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
        message = SentMessage(PROVIDER, sid, to, message_id, content=fields["Body"], callback_url=callback, sender=sender)
        state.accept(message)
        return json_response(_resource(account_sid, message, created=True), 201)

    def fail(kind: str) -> web.Response:
        if kind == "throttle":
            return _error(429, 20429, "Too Many Requests")
        if kind == "invalid_number":
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        return _error(500, 20500, "Internal Server Error")

    return await simulate(request, PROVIDER, accept=accept, fail=fail)


async def list_messages(request: web.Request) -> web.Response:
    """Read multiple Message resources, newest first: filtered by To, From and DateSent (a GMT day,
    `DateSent<` / `DateSent>` for on or before / on or after it), PageSize (≤ 1000), Page and PageToken."""
    state = request.app[STATE_KEY]
    if not _authenticated(request):
        return _error(401, 20003, "Authenticate")
    query = request.query
    try:
        size = int(query.get("PageSize", "50"))
        page = int(query.get("Page", "0"))
        days = {op: dt.date.fromisoformat(query[f"DateSent{op}"]) for op in ("", "<", ">") if f"DateSent{op}" in query}
    except ValueError:
        return _error(400, 20001, "Invalid PageSize, Page or DateSent.")
    if not 1 <= size <= 1000 or page < 0:
        return _error(400, 20001, "PageSize must be 1-1000 and Page 0 or more.")
    to = query.get("To")
    listed = state.sent_to_address(PROVIDER, to) if to else [m for found in state.sent.values() for m in found]
    if not to:
        listed = sorted((m for m in listed if m.provider == PROVIDER), key=lambda m: m.sent_at, reverse=True)
    sent_on = {"": operator.eq, "<": operator.le, ">": operator.ge}
    listed = [
        m
        for m in listed
        if (not query.get("From") or m.sender == query["From"])
        and all(sent_on[op](m.sent_at.astimezone(dt.UTC).date(), day) for op, day in days.items())
    ]
    account_sid = request.match_info["account_sid"]
    path = request.path
    rest = {k: v for k, v in query.items() if k not in ("Page", "PageToken")}
    more = len(listed) > (page + 1) * size
    next_page = f"{path}?{urlencode({**rest, 'Page': page + 1, 'PageToken': f'PA{page + 1}'})}" if more else None
    return json_response(
        {
            "messages": [_resource(account_sid, m) for m in listed[page * size : (page + 1) * size]],
            "page": page,
            "page_size": size,
            "start": page * size,
            "end": page * size + min(size, max(0, len(listed) - page * size)) - 1,
            "uri": f"{path}?{urlencode(dict(query))}",
            "first_page_uri": f"{path}?{urlencode({**rest, 'Page': 0})}",
            "next_page_uri": next_page,
            "previous_page_uri": f"{path}?{urlencode({**rest, 'Page': page - 1})}" if page else None,
        }
    )


def _resource(account_sid: str, message: SentMessage, *, created: bool = False) -> dict[str, Any]:
    """A Message resource as Twilio answers it: `queued` when just created; later sent at once (the
    simulator's carrier takes it), then delivered or undelivered once its report is due."""
    made = format_datetime(message.sent_at, usegmt=True)
    status = "queued" if created else (message.outcome or "sent")
    service = message.sender if message.sender and message.sender.startswith("MG") else None
    return {
        "sid": message.provider_message_id,
        "account_sid": account_sid,
        "to": message.to,
        "from": None if service else message.sender,
        "messaging_service_sid": service,
        "body": message.content,
        "status": status,
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": made,
        "date_updated": format_datetime(message.reported_at or message.sent_at, usegmt=True),
        "date_sent": None if created else made,
        "error_code": 30003 if status == "undelivered" else None,
        "error_message": None,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{message.provider_message_id}.json",
    }


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
