"""Tencent Cloud SMS API 3.0 (2021-01-11) as the simulator serves it: POST / with X-TC-Action."""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from typing import Any

import phonenumbers
from aiohttp import web

from apps.dispatch.providers.tencent import ALGORITHM, API_VERSION, CHINA, SERVICE, tc3_signature
from devstack.simulator.common import STATE_KEY, Push, json_array_pushes, json_response, simulate
from devstack.simulator.state import Record, SentMessage, SimulatorState

PROVIDER = "tencent"
MAX_CLOCK_SKEW_S = 300
E164 = re.compile(r"^\+\d{6,15}$")
AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} Credential=(?P<id>[^/]+)/(?P<date>\d{{4}}-\d{{2}}-\d{{2}})/(?P<service>[^/]+)/tc3_request, "
    r"SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def _error(code: str, message: str, status: int = 200) -> web.Response:
    # API 3.0 answers every error with HTTP 200 and Response.Error; the simulator keeps 4xx/5xx for
    # garbage and injected server errors.
    return json_response({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}}, status)


def _ok(**fields: Any) -> web.Response:
    return json_response({"Response": {**fields, "RequestId": str(uuid.uuid4())}})


async def handle(request: web.Request) -> web.Response:
    body = await request.read()
    denied = _authenticate(request, body)
    if denied is not None:
        return denied
    if request.headers.get("X-TC-Version") != API_VERSION:
        return _error("InvalidParameter", f"X-TC-Version must be {API_VERSION}.", 400)
    try:
        params = json.loads(body)
    except ValueError:
        params = None
    if not isinstance(params, dict):
        return _error("InvalidParameter", "The request body is not a JSON object.", 400)
    action = request.headers["X-TC-Action"]
    if action == "SendSms":
        return await _send_sms(request, params)
    if action == "PullSmsSendStatus":
        return _pull_sms_send_status(request.app[STATE_KEY], params)
    if action == "PullSmsSendStatusByPhoneNumber":
        return _pull_by_phone_number(request.app[STATE_KEY], params)
    return _error("InvalidAction", f"The action {action!r} does not exist.", 400)


def _authenticate(request: web.Request, body: bytes) -> web.Response | None:
    credentials = request.app[STATE_KEY].credentials[PROVIDER]
    match = AUTHORIZATION.match(request.headers.get("Authorization", ""))
    if match is None:
        return _error("AuthFailure.InvalidAuthorization", "The Authorization header is not a TC3-HMAC-SHA256 signature.")
    if match["id"] != credentials["secret_id"]:
        return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    try:
        timestamp = int(request.headers.get("X-TC-Timestamp", ""))
    except ValueError:
        return _error("AuthFailure.InvalidAuthorization", "X-TC-Timestamp must be unix seconds.")
    if abs(time.time() - timestamp) > MAX_CLOCK_SKEW_S:
        return _error("AuthFailure.SignatureExpire", "The signature expired: X-TC-Timestamp is more than 5 minutes off.")
    signed = {name: request.headers.get(name, "") for name in match["headers"].split(";")}
    expected = tc3_signature(
        credentials["secret_key"], service=match["service"], signed_headers=signed, payload=body, timestamp=timestamp
    )
    if match["service"] != SERVICE or not hmac.compare_digest(expected, match["signature"]):
        return _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
    return None


def _status(phone: str, session_context: str, code: str, message: str, serial_no: str = "") -> dict[str, Any]:
    return {
        "SerialNo": serial_no,
        "PhoneNumber": phone,
        "Fee": 1 if code == "Ok" else 0,
        "SessionContext": session_context,
        "Code": code,
        "Message": message,
        "IsoCode": "CN" if phone.startswith("+86") else "",
    }


async def _send_sms(request: web.Request, params: dict[str, Any]) -> web.Response:
    state = request.app[STATE_KEY]
    phones = params.get("PhoneNumberSet")
    if not isinstance(phones, list) or not 1 <= len(phones) <= 200 or not all(isinstance(p, str) for p in phones):
        return _error("InvalidParameterValue.IncorrectPhoneNumber", "PhoneNumberSet must hold 1-200 phone numbers.")
    for name in ("SmsSdkAppId", "TemplateId"):
        if not isinstance(params.get(name), str) or not params[name]:
            return _error("MissingParameter", f"The parameter {name} is missing.")
    template_params = params.get("TemplateParamSet", [])
    if not isinstance(template_params, list) or not all(isinstance(p, str) for p in template_params):
        return _error("InvalidParameterValue.TemplateParameterFormatError", "TemplateParamSet must be an array of strings.")
    session_context = str(params.get("SessionContext") or "")

    def accept() -> web.Response:
        statuses = []
        for phone in phones:
            if not E164.match(phone):
                statuses.append(_status(phone, session_context, "InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误"))
                continue
            serial_no = f"2433:{uuid.uuid4().hex[:22]}"
            state.record(Record(PROVIDER, phone, session_context or None, params, provider_message_id=serial_no))
            content = f"【{params.get('SignName', '')}】{params['TemplateId']} {template_params}"
            state.accept(
                SentMessage(PROVIDER, serial_no, phone, session_context or None, template=params["TemplateId"], content=content)
            )
            statuses.append(_status(phone, session_context, "Ok", "send success", serial_no))
        return _ok(SendStatusSet=statuses)

    def fail(kind: str) -> web.Response:
        if kind == "http_500":
            return _error("InternalError", "An internal error occurred.", 500)
        code, message = {
            "throttle": ("LimitExceeded.DeliveryFrequencyLimit", "下发短信命中了频率限制策略"),
            "invalid_number": ("InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误"),
        }[kind]
        return _ok(SendStatusSet=[_status(phone, session_context, code, message) for phone in phones])

    return await simulate(request, PROVIDER, accept=accept, fail=fail)


def _split(e164: str) -> tuple[str, str]:
    """(country code, national number), as Tencent's reports give them. Country codes are prefix-free:
    the first 1-3 digits that are one are it, not a full parse per report (docs/performance.md, Simulator)."""
    digits = e164[1:]
    if e164.startswith("+") and digits.isdigit():
        for size in (1, 2, 3):
            if int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                return digits[:size], digits[size:].lstrip("0") or "0"
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return "86", e164.lstrip("+")
    return str(number.country_code), str(number.national_number)


def _pull_sms_send_status(state: SimulatorState, params: dict[str, Any]) -> web.Response:
    limit = params.get("Limit")
    if not isinstance(limit, int) or not 1 <= limit <= 100 or not params.get("SmsSdkAppId"):
        return _error("InvalidParameterValue", "Limit must be 1-100 and SmsSdkAppId is required.")
    queue = state.pull_queues.get(PROVIDER)
    pulled = [queue.popleft() for _ in range(min(limit, len(queue)))] if queue else []
    return _ok(
        PullSmsSendStatusSet=[
            _pulled(m, (m.reported_at or m.sent_at).astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")) for m in pulled
        ]
    )


def _pulled(m: Any, received: str | int) -> dict[str, Any]:
    """One pulled delivery status: the pull of a batch says the time as text, the pull by number in
    Unix seconds (as the two APIs document)."""
    return {
        "UserReceiveTime": received,
        "CountryCode": _split(m.to)[0],
        "SubscriberNumber": _split(m.to)[1],
        "PhoneNumber": m.to,
        "SerialNo": m.provider_message_id,
        "ReportStatus": "SUCCESS" if m.outcome == "delivered" else "FAIL",
        "Description": "DELIVRD" if m.outcome == "delivered" else "UNDELIV",
        "SessionContext": m.message_id or "",
    }


def _pull_by_phone_number(state: SimulatorState, params: dict[str, Any]) -> web.Response:
    """The delivery statuses of one number since BeginTime (at most 7 days back), each with the
    SessionContext of its SendSms; only messages whose carrier report has arrived are listed."""
    begin, end, limit = params.get("BeginTime"), params.get("EndTime"), params.get("Limit")
    now = time.time()
    if not isinstance(begin, int) or isinstance(begin, bool) or not now - 7 * 86400 <= begin <= now:
        return _error("InvalidParameterValue.TimeRangeError", "BeginTime must be unix seconds within the last 7 days.")
    if end is not None and (not isinstance(end, int) or isinstance(end, bool)):
        return _error("InvalidParameterValue", "EndTime must be unix seconds.")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100 or params.get("Offset") != 0:
        return _error("InvalidParameterValue", "Limit must be 1-100 and Offset 0.")
    phone = params.get("PhoneNumber")
    if not isinstance(phone, str) or not E164.match(phone) or not params.get("SmsSdkAppId"):
        return _error("InvalidParameterValue.IncorrectPhoneNumber", "PhoneNumber (E.164) and SmsSdkAppId are required.")
    reported = [
        m
        for m in state.sent_to_address(PROVIDER, phone)
        if m.outcome is not None and begin <= m.sent_at.timestamp() and (end is None or m.sent_at.timestamp() <= end)
    ]
    return _ok(PullSmsSendStatusSet=[_pulled(m, int((m.reported_at or m.sent_at).timestamp())) for m in reported[:limit]])


def pushes(state: SimulatorState, messages: list[SentMessage]) -> list[Push]:
    """The status push: JSON arrays of reports to `<receipt base>tencent` (unsigned, as Tencent's are)."""
    return json_array_pushes(state, PROVIDER, messages, _report)


def _report(message: SentMessage) -> dict[str, Any]:
    delivered = message.outcome == "delivered"
    country_code, national_number = _split(message.to)
    return {
        "user_receive_time": (message.reported_at or message.sent_at).astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
        "nationcode": country_code,
        "mobile": national_number,
        "report_status": "SUCCESS" if delivered else "FAIL",
        "errmsg": "DELIVRD" if delivered else "UNDELIV",
        "description": "用户短信送达成功" if delivered else "用户短信未送达",
        "sid": message.provider_message_id,
    }
