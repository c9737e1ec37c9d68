"""Volcengine SMS (the volcSMS OpenAPI) as the simulator serves it: POST /?Action=…&Version=… with a
JSON body, signed with HMAC-SHA256 (`Authorization`, `X-Date`). The real API has a host of its own;
here it shares `/` with Aliyun's and Tencent's, and `claims` tells its requests apart.

Errors come in `ResponseMetadata.Error`: the gateway's with their documented HTTP status
(docs/6369/68677), the SMS service's RE:* codes (docs/6361/173288) with 400, a status the documents
do not give (the adapter reads the code, whatever the status).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import secrets
import uuid
from typing import Any

from aiohttp import web

from apps.dispatch.providers.numbers import reported_e164
from apps.dispatch.providers.volcengine import (
    ALGORITHM,
    BATCH_VERSION,
    CHINA,
    DEFAULT_REGION,
    DETAILS_VERSION,
    MAX_NUMBERS_PER_CALL,
    SEND_VERSION,
    SERVICE,
    phone_number,
    signature,
)
from devstack.simulator.common import STATE_KEY, Push, json_array_pushes, json_response, simulate
from devstack.simulator.state import Record, SentMessage, SimulatorState

PROVIDER = "volcengine"
VERSIONS = {"SendSms": SEND_VERSION, "SendBatchSms": BATCH_VERSION, "GetSmsSendDetails": DETAILS_VERSION}
ACCOUNT = "2100000001"  # the simulated Volcengine account id, as reports name it
# A signature is valid for X-Expires seconds after X-Date, 900 unless the request says otherwise.
MAX_CLOCK_SKEW = dt.timedelta(seconds=900)
AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} Credential=(?P<key>[^/]+)/(?P<day>\d{{8}})/(?P<region>[^/]+)/(?P<service>[^/]+)/request, "
    r"SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
PHONE = re.compile(r"^\+?\d{6,15}$")


def claims(request: web.Request) -> bool:
    """Volcengine's requests: signed with its scheme, or naming one of its API versions in the query
    (Aliyun's is 2017-05-25), so that an unsigned one gets Volcengine's error, not Aliyun's."""
    signed = request.headers.get("Authorization", "").startswith(f"{ALGORITHM} ")
    return signed or request.query.get("Version") in VERSIONS.values()


def _answer(request: web.Request, status: int = 200, *, result: Any = None, error: tuple[str, str] | None = None) -> web.Response:
    metadata: dict[str, Any] = {
        "RequestId": dt.datetime.now(CHINA).strftime("%Y%m%d%H%M%S") + secrets.token_hex(7).upper(),
        "Action": request.query.get("Action", ""),
        "Version": request.query.get("Version", ""),
        "Service": SERVICE,
        "Region": DEFAULT_REGION,
    }
    if error is not None:
        metadata["Error"] = {"Code": error[0], "Message": error[1]}
    return json_response({"ResponseMetadata": metadata} | ({"Result": result} if result is not None else {}), status)


def _error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    return _answer(request, status, error=(code, message))


async def handle(request: web.Request) -> web.Response:
    body = await request.read()
    denied = _authenticate(request, body)
    if denied is not None:
        return denied
    action, version = request.query.get("Action", ""), request.query.get("Version", "")
    if request.method != "POST" or VERSIONS.get(action) != version:
        return _error(request, 404, "InvalidActionOrVersion", f"Could not find operation {action} for version {version}")
    try:
        params = json.loads(body)
    except ValueError:
        params = None
    if not isinstance(params, dict):
        return _error(request, 400, "RE:0009", "请求参数错误: the body is not a JSON object")
    if action == "GetSmsSendDetails":
        return _send_details(request, params)
    if not params.get("SmsAccount") or not isinstance(params["SmsAccount"], str):
        return _error(request, 400, "RE:0003", "子账号不存在")
    if not params.get("Sign") or not isinstance(params["Sign"], str):
        return _error(request, 400, "RE:0004", "签名错误")
    if not params.get("TemplateID") or not isinstance(params["TemplateID"], str):
        return _error(request, 400, "RE:0005", "模板错误")
    return await _send(request, params, _entries(params) if action == "SendBatchSms" else _numbers(params))


def _authenticate(request: web.Request, body: bytes) -> web.Response | None:
    credentials = request.app[STATE_KEY].credentials[PROVIDER]
    authorization = request.headers.get("Authorization", "")
    if not authorization:
        return _error(request, 401, "MissingSignature", "The request is missing signature.")
    match = AUTHORIZATION.match(authorization)
    if match is None:
        return _error(request, 400, "InvalidAuthorization", "Invalid 'Authorization' header, Pls check authorization header.")
    if match["key"] != credentials["access_key_id"]:
        return _error(request, 401, "InvalidAccessKey", f"The accesskey [{match['key']}] included in the request is invalid.")
    x_date = request.headers.get("X-Date", "")
    try:
        signed_at = dt.datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return _error(request, 400, "MissingRequestInfo", "The request is missing X-Date information.")
    if abs(dt.datetime.now(dt.UTC) - signed_at) > MAX_CLOCK_SKEW:
        return _error(request, 400, "InvalidTimestamp", "The Signature of the request is expired.")
    if match["service"] != SERVICE:
        return _error(request, 404, "ServiceNotFound", f"This service[{match['service']}] not found.")
    names = match["headers"].split(";")
    expected = signature(
        credentials["secret_access_key"],
        method=request.method,
        path=request.path,
        query=dict(request.query),
        signed_headers={name: request.headers.get(name, "") for name in names},
        payload=body,
        x_date=x_date,
        region=match["region"],
        service=match["service"],
    )
    # Host and X-Date must be signed when present; the credential's day is X-Date's.
    complete = {"host", "x-date"} <= set(names) and match["day"] == x_date[:8]
    if not complete or not hmac.compare_digest(expected, match["signature"]):
        return _error(
            request,
            401,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return None


def _numbers(params: dict[str, Any]) -> list[tuple[Any, Any]]:
    """SendSms: the comma-separated numbers, all with the one TemplateParam."""
    numbers = params.get("PhoneNumbers")
    phones = numbers.split(",") if isinstance(numbers, str) and numbers else []
    return [(phone, params.get("TemplateParam")) for phone in phones]


def _entries(params: dict[str, Any]) -> list[tuple[Any, Any]]:
    """SendBatchSms: each entry of Messages with its own number and TemplateParam."""
    messages = params.get("Messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return []
    return [(m.get("PhoneNumber"), m.get("TemplateParam")) for m in messages]


async def _send(request: web.Request, params: dict[str, Any], entries: list[tuple[Any, Any]]) -> web.Response:
    # A malformed number refuses the whole call here (the documents let some errors of a call to
    # several numbers come back in receipts instead; which ones, they do not say).
    if not 1 <= len(entries) <= MAX_NUMBERS_PER_CALL or not all(isinstance(p, str) and PHONE.match(p) for p, _ in entries):
        return _error(request, 400, "RE:0006", f"手机号格式错误: 1-{MAX_NUMBERS_PER_CALL} numbers expected")
    decoded = []
    for phone, template_param in entries:
        try:
            values = json.loads(template_param) if template_param else {}
        except (TypeError, ValueError):
            values = None
        if not isinstance(values, dict):
            return _error(request, 400, "RE:0009", "请求参数错误: TemplateParam must be a JSON object in a string")
        decoded.append((phone, values))
    state = request.app[STATE_KEY]
    tag = str(params.get("Tag") or "") or None

    def accept() -> web.Response:
        message_ids = []
        for phone, values in decoded:
            to, message_id = reported_e164(phone), str(uuid.uuid4())
            state.record(Record(PROVIDER, to, tag, params, provider_message_id=message_id))
            content = f"【{params['Sign']}】{params['TemplateID']} {json.dumps(values, ensure_ascii=False)}"
            state.accept(
                SentMessage(
                    PROVIDER, message_id, to, tag, template=params["TemplateID"], content=content, sender=params["SmsAccount"]
                )
            )
            message_ids.append(message_id)
        return _answer(request, result={"MessageID": message_ids})

    def fail(kind: str) -> web.Response:
        if kind == "throttle":
            return _error(request, 429, "FlowLimitExceeded", "Request was denied due to flow limit exceeded.")
        if kind == "invalid_number":
            return _error(request, 400, "RE:0006", "手机号格式错误")
        return _error(request, 500, "InternalError", "Service has some internal Error. Pls Contact With Admin.")

    return await simulate(request, PROVIDER, accept=accept, fail=fail)


def _millis(moment: dt.datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


def _send_details(request: web.Request, params: dict[str, Any]) -> web.Response:
    """GetSmsSendDetails, as the Go SDK models it: one message group's sends to a phone on a Beijing day."""
    state: SimulatorState = request.app[STATE_KEY]
    try:
        day = dt.datetime.strptime(str(params.get("sendDate")), "%Y%m%d").date()
        page_size, page = int(params.get("pageSize") or 0), int(params.get("pageIndex") or 0)
    except ValueError:
        return _error(request, 400, "RE:0009", "请求参数错误: sendDate is yyyyMMdd, pageSize and pageIndex integers")
    if not params.get("subAccount") or not 1 <= page_size <= 100 or page < 1:
        return _error(request, 400, "RE:0009", "请求参数错误: subAccount, pageSize 1-100 and pageIndex from 1")
    if params.get("messageId"):
        candidates = state.sent_messages(PROVIDER, str(params["messageId"]))
    else:
        candidates = [m for (provider, _), found in state.sent.items() if provider == PROVIDER for m in found]
    phone = params.get("phoneNumber")
    matches = [
        m
        for m in candidates
        if m.sender == params["subAccount"]
        and (not phone or m.to == reported_e164(str(phone)))
        and m.sent_at.astimezone(CHINA).date() == day
    ]
    rows = [
        {
            "status": {None: 1, "undelivered": 2, "delivered": 3}[m.outcome],
            "errorCode": "NE:0105" if m.outcome == "undelivered" else "",
            "errorMessage": "空号、关机、停机等号码异常" if m.outcome == "undelivered" else "",
            "phoneNumber": phone_number(m.to),
            "signature": _sign_of(m),
            "templateID": m.template or "",
            "content": m.content or "",
            "channelType": "CN_NTC",
            "messageId": m.provider_message_id,
            "msgCount": 1,
            "sendTime": _millis(m.sent_at),
            "receiptTime": _millis(m.reported_at),
        }
        for m in matches[(page - 1) * page_size : page * page_size]
    ]
    result = {"sendDetailsResults": rows, "total": len(matches), "account": ACCOUNT, "subAccount": params["subAccount"]}
    return _answer(request, result=result)


def _sign_of(message: SentMessage) -> str:
    return (message.content or "").partition("】")[0].removeprefix("【")


def pushes(state: SimulatorState, messages: list[SentMessage]) -> list[Push]:
    """The status report push: JSON arrays to `<receipt base>volcengine` (unsigned, as Volcengine's are)."""
    return json_array_pushes(state, PROVIDER, messages, _report)


def _report(message: SentMessage) -> dict[str, Any]:
    delivered = message.outcome == "delivered"
    mainland = message.to.startswith("+86")
    return {
        "account": ACCOUNT,
        "sub_account": message.sender or "",
        "status_code": "0" if delivered else "NE:0105",
        "description": "DELIVRD" if delivered else "UNDELIV",
        "signature": _sign_of(message),
        "template_id": message.template or "",
        "mobile": phone_number(message.to),
        "channel_type": "CN_NTC" if mainland else "I18N_MKT",
        "message_id": message.provider_message_id,
        "msg_count": 1,
        "service_id": "1069000000001" if mainland else "",
        "ext": message.message_id or "",
        "send_time": _millis(message.sent_at),
        "recv_time": _millis(message.reported_at or message.sent_at),
        "mccmnc": "46000" if mainland else "",
        "iso_code": "CN" if mainland else "",
    }
