"""Aliyun dysmsapi 2017-05-25 as the simulator serves it: RPC parameters in the query or a form body."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import uuid
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from apps.dispatch.providers.aliyun import CHINA, national_number, signature
from apps.dispatch.providers.numbers import reported_e164
from devstack.simulator.common import STATE_KEY, Push, json_array_pushes, json_response, simulate
from devstack.simulator.state import Record, SentMessage, SimulatorState

PROVIDER = "aliyun"
HOST_ID = "dysmsapi.aliyuncs.com"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
PHONE = re.compile(r"^\+?\d{6,15}$")
INVALID_JSON = "JSON参数不合法, 只接受字符串值"
SIGNED_PARAMS = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "SignatureVersion", "Timestamp")


def form_fields(encoded: str) -> dict[str, str]:
    """`dict(parse_qsl(encoded))`, cheaper for the common case of few escapes (docs/performance.md, Simulator)."""
    fields = {}
    for pair in encoded.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = unquote_plus(name), unquote_plus(value)
        fields[name] = value
    return fields


def _error(status: int, code: str, message: str) -> web.Response:
    return json_response({"RequestId": str(uuid.uuid4()).upper(), "HostId": HOST_ID, "Code": code, "Message": message}, status)


def _ok(**fields: Any) -> web.Response:
    return json_response({"RequestId": str(uuid.uuid4()).upper(), "Code": "OK", "Message": "OK", **fields})


def _china(moment: dt.datetime) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


async def handle(request: web.Request) -> web.Response:
    try:
        params = form_fields(request.query_string)
        if request.method == "POST":
            params.update(form_fields((await request.read()).decode("utf-8")))
    except ValueError:
        return _error(400, "InvalidParameter", "The request parameters are not valid UTF-8 form data.")
    denied = _authenticate(request, params)
    if denied is not None:
        return denied
    action = params.get("Action")
    if action == "SendSms":
        return await _send_sms(request, params)
    if action == "SendBatchSms":
        return await _send_batch_sms(request, params)
    if action == "QuerySendDetails":
        return _query_send_details(request.app[STATE_KEY], params)
    return _error(404, "InvalidAction.NotFound", f"Specified api {action!r} is not found, please check your url and method.")


def _authenticate(request: web.Request, params: dict[str, str]) -> web.Response | None:
    credentials = request.app[STATE_KEY].credentials[PROVIDER]
    missing = [name for name in SIGNED_PARAMS if not params.get(name)]
    if missing:
        return _error(
            400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards: missing {missing[0]}."
        )
    if params["AccessKeyId"] != credentials["access_key_id"]:
        return _error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    expected = signature(request.method, params, credentials["access_key_secret"])
    if not hmac.compare_digest(expected, params["Signature"]):
        return _error(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
    try:
        sent_at = dt.datetime.fromisoformat(params["Timestamp"])
        if not params["Timestamp"].endswith("Z"):
            raise ValueError("not UTC")
    except ValueError:
        return _error(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
    if abs(dt.datetime.now(dt.UTC) - sent_at) > MAX_CLOCK_SKEW:
        return _error(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    return None


def _fail(kind: str) -> web.Response:
    if kind == "throttle":
        return _error(200, "isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
    if kind == "invalid_number":
        return _error(200, "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
    return _error(500, "InternalError", "The request processing has failed due to some unknown error.")


def _missing(params: dict[str, str], *names: str) -> web.Response | None:
    for name in names:
        if not params.get(name):
            return _error(400, f"Missing{name}", f"{name} is mandatory for this action.")
    return None


async def _send_sms(request: web.Request, params: dict[str, str]) -> web.Response:
    state = request.app[STATE_KEY]
    missing = _missing(params, "PhoneNumbers", "SignName", "TemplateCode")
    if missing is not None:
        return missing
    phones = params["PhoneNumbers"].split(",")
    if not all(PHONE.match(phone) for phone in phones):
        return _fail("invalid_number")
    try:
        template_params = json.loads(params.get("TemplateParam") or "{}")
    except ValueError:
        template_params = None
    if not isinstance(template_params, dict):
        return _error(200, "isv.INVALID_JSON_PARAM", INVALID_JSON)

    def accept() -> web.Response:
        biz_id = _accept(state, params, [(phone, params["SignName"], template_params) for phone in phones])
        return _ok(BizId=biz_id)

    return await simulate(request, PROVIDER, accept=accept, fail=_fail)


async def _send_batch_sms(request: web.Request, params: dict[str, str]) -> web.Response:
    state = request.app[STATE_KEY]
    missing = _missing(params, "PhoneNumberJson", "SignNameJson", "TemplateCode")
    if missing is not None:
        return missing
    try:
        phones = json.loads(params["PhoneNumberJson"])
        sign_names = json.loads(params["SignNameJson"])
        template_params = json.loads(params.get("TemplateParamJson") or "null") or [{} for _ in phones]
    except ValueError:
        return _error(200, "isv.INVALID_JSON_PARAM", INVALID_JSON)
    lists = (phones, sign_names, template_params)
    if not all(isinstance(items, list) and len(items) == len(phones) for items in lists) or not phones:
        return _error(
            200, "isv.INVALID_PARAMETERS", "PhoneNumberJson, SignNameJson and TemplateParamJson must be arrays of one length."
        )
    if not all(isinstance(phone, str) and PHONE.match(phone) for phone in phones):
        return _fail("invalid_number")

    def accept() -> web.Response:
        return _ok(BizId=_accept(state, params, list(zip(phones, sign_names, template_params, strict=True))))

    return await simulate(request, PROVIDER, accept=accept, fail=_fail)


def _accept(state: SimulatorState, params: dict[str, str], entries: list[tuple[str, str, Any]]) -> str:
    biz_id = f"{900000000000000000 + state.next_id()}^0"
    for phone, sign_name, template_params in entries:
        to = reported_e164(phone)
        message_id = params.get("OutId") or None
        state.record(Record(PROVIDER, to, message_id, params, provider_message_id=biz_id))
        content = f"【{sign_name}】{params['TemplateCode']} {json.dumps(template_params, ensure_ascii=False)}"
        state.accept(SentMessage(PROVIDER, biz_id, to, message_id, template=params["TemplateCode"], content=content))
    return biz_id


def _query_send_details(state: SimulatorState, params: dict[str, str]) -> web.Response:
    missing = _missing(params, "PhoneNumber", "SendDate", "PageSize", "CurrentPage")
    if missing is not None:
        return missing
    try:
        day = dt.datetime.strptime(params["SendDate"], "%Y%m%d").date()
        page_size, page = int(params["PageSize"]), int(params["CurrentPage"])
    except ValueError:
        return _error(400, "InvalidParameter", "SendDate is yyyyMMdd; PageSize and CurrentPage are integers.")
    if not 1 <= page_size <= 50 or page < 1:
        return _error(400, "InvalidParameter", "PageSize is 1-50 and CurrentPage starts at 1.")
    phone = national_number(reported_e164(params["PhoneNumber"]))
    if params.get("BizId"):
        candidates = state.sent_messages(PROVIDER, params["BizId"])
    else:
        candidates = [m for (provider, _), found in state.sent.items() if provider == PROVIDER for m in found]
    matches = [m for m in candidates if national_number(m.to) == phone and m.sent_at.astimezone(CHINA).date() == day]
    shown = matches[(page - 1) * page_size : page * page_size]
    details = [
        {
            "PhoneNum": phone,
            # 1 = waiting for the carrier's report, 2 = failed, 3 = delivered.
            "SendStatus": {None: 1, "undelivered": 2, "delivered": 3}[m.outcome],
            "ErrCode": {None: "", "undelivered": "UNDELIV", "delivered": "DELIVERED"}[m.outcome],
            "TemplateCode": m.template,
            "Content": m.content,
            "SendDate": _china(m.sent_at),
            "ReceiveDate": _china(m.reported_at) if m.reported_at else "",
            "OutId": m.message_id or "",
        }
        for m in shown
    ]
    return _ok(TotalCount=len(matches), SmsSendDetailDTOs={"SmsSendDetailDTO": details})


def pushes(state: SimulatorState, messages: list[SentMessage]) -> list[Push]:
    """SmsReport: JSON arrays of reports to `<receipt base>aliyun` (unsigned, as Aliyun's are)."""
    return json_array_pushes(state, PROVIDER, messages, _report)


def _report(message: SentMessage) -> dict[str, Any]:
    delivered = message.outcome == "delivered"
    return {
        "phone_number": national_number(message.to),
        "send_time": _china(message.sent_at),
        "report_time": _china(message.reported_at or message.sent_at),
        "success": delivered,
        "err_code": "DELIVERED" if delivered else "UNDELIV",
        "err_msg": "用户接收成功" if delivered else "用户接收失败",
        "sms_size": "1",
        "biz_id": message.provider_message_id,
        "out_id": message.message_id or "",
    }
