"""Aliyun (Alibaba Cloud) SMS: dysmsapi 2017-05-25, RPC style with signature version 1.0.

References: help.aliyun.com SendSms / QuerySendDetails / SmsReport (HTTP batch push) and the RPC
signature document (HMAC-SHA1 over "POST&%2F&" + the percent-encoded canonical query).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from apps.dispatch.providers.base import (
    THROTTLE,
    OutboundMessage,
    ProviderAdapter,
    ProviderError,
    Receipt,
    ReceiptFormatError,
    SendResult,
    json_reports,
    send_grouped,
)
from apps.dispatch.providers.http import (
    HttpResponse,
    invalid_connection_settings,
    raise_for_response,
)
from apps.dispatch.providers.numbers import reported_e164

API_VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"
# Aliyun's report and query times are Beijing time without a zone.
CHINA = dt.timezone(dt.timedelta(hours=8))

PERMANENT_CODES = {
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isv.DENY_IP_RANGE",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "Forbidden.RAM",
    "MissingParameter",
}
# Of those, the ones that are the provider account's or its configuration's fault: fail over.
PROVIDER_FAULT_CODES = {
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isv.DENY_IP_RANGE",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
}
LOOKUP_MAX_PAGES = 10
MAX_BATCH_NUMBERS = 100  # SendBatchSms
THROTTLE_CODES = {"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling", "Throttling.User", "Throttling.Api"}


UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's signature requires: only A-Z a-z 0-9 - _ . ~ stay literal."""
    # Most names and values need no escaping; skipping `quote` for them matters to the simulator's throughput.
    return value if UNRESERVED.fullmatch(value) else quote(value, safe="~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()) if k != "Signature")
    # The canonical query holds only unreserved characters, "%XX", "=" and "&", so encoding it a
    # second time is these three replacements (and much cheaper than `quote` on a long string).
    encoded = canonical.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
    return f"{method}&%2F&{encoded}"


def signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    digest = hmac.new(f"{access_key_secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def sign(
    method: str, params: Mapping[str, str], access_key_id: str, access_key_secret: str, *, now: dt.datetime | None = None
) -> dict[str, str]:
    """`params` plus the common parameters and their `Signature`."""
    signed = {
        **params,
        "AccessKeyId": access_key_id,
        "Format": "JSON",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": uuid.uuid4().hex,
        "SignatureVersion": "1.0",
        "Timestamp": (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": API_VERSION,
    }
    signed["Signature"] = signature(method, signed, access_key_secret)
    return signed


def national_number(e164: str) -> str:
    """Aliyun takes mainland numbers bare and others with their country code, never with '+'."""
    digits = e164.lstrip("+")
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


def china_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ReceiptFormatError(f"expected a 'YYYY-MM-DD hh:mm:ss' time, got {value!r}")
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError as error:
        raise ReceiptFormatError(str(error)) from error


class AliyunSms(ProviderAdapter):
    """Settings: access_key_id, access_key_secret, endpoint (default https://dysmsapi.aliyuncs.com),
    sign_name (used when a template has no signature), region_id (default cn-hangzhou), timeouts.

    `send_batch` puts the messages of one template into SendBatchSms calls (each number with its
    own signature and params, ≤ 100 numbers): one BizId for the call, so receipts are matched by
    BizId and number; one OutId, the engine's batch reference, which a lookup after a crash asks for.
    A call refused for a reason that may be one message's (a bad number) is retried message by
    message, so that each gets its own outcome. The status push (SmsReport) is unsigned: the
    receiver must sit behind a secret per-provider URL token.
    """

    kind = "aliyun"
    default_endpoint = DEFAULT_ENDPOINT
    template_based = True
    template_id_format = (re.compile(r"SMS_\d{1,20}"), "an Aliyun template code like SMS_123456789")
    reports_delivery = True
    signed_receipts = False  # SmsReport pushes carry no signature
    receipt_ack = (200, "application/json", '{"code": 0, "msg": "成功"}'.encode())
    polls_by_message = True  # QuerySendDetails asks per (phone, BizId)
    sends_batches = True
    max_batch = MAX_BATCH_NUMBERS

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("access_key_id", "access_key_secret") if not settings.get(name)]
        return invalid + invalid_connection_settings(settings)

    def call(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One RPC call, signed, parameters form-encoded in a POST body; returns the answer's JSON."""
        signed = sign(
            "POST",
            {"Action": action, "RegionId": self.settings.get("region_id") or "cn-hangzhou", **params},
            self.settings["access_key_id"],
            self.settings["access_key_secret"],
        )
        response = self.http.request(
            "POST",
            self.endpoint + "/",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            body=urlencode(signed).encode(),
        )
        raise_for_response(response, _error_reply)
        answer = response.json()
        if not isinstance(answer, dict):
            raise ProviderError("bad_response", f"HTTP {response.status}: not a JSON object", permanent=False, ambiguous=True)
        return answer

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.provider_template_id:
            raise ProviderError(
                "missing_template", "the template has no Aliyun template code", permanent=True, provider_fault=True
            )
        answer = self.call(
            "SendSms",
            {
                "PhoneNumbers": national_number(message.to),
                "SignName": message.sms_signature or self.settings.get("sign_name", ""),
                "TemplateCode": message.provider_template_id,
                "TemplateParam": _json(message.params),
                "OutId": message.message_id,
            },
        )
        if not answer.get("BizId"):
            raise ProviderError("bad_response", f"no BizId in {answer}", permanent=False, ambiguous=True)
        return SendResult(str(answer["BizId"]), {"BizId": answer["BizId"], "RequestId": answer.get("RequestId")})

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        return send_grouped(
            messages, lambda m: (m.provider_template_id, m.to.startswith("+86")), MAX_BATCH_NUMBERS, self._send_group
        )

    def _send_group(self, group: list[OutboundMessage]) -> list[SendResult | ProviderError]:
        template = group[0].provider_template_id
        # Mainland numbers only: a batch's reports are told apart by their number, and Aliyun writes
        # numbers without '+', so an international "1415…" reads like a mainland mobile number. Each
        # international message goes alone, with our id as OutId.
        if template is None or len(group) == 1 or not group[0].batch_reference or not group[0].to.startswith("+86"):
            return super().send_batch(group)
        try:
            answer = self.call(
                "SendBatchSms",
                {
                    "PhoneNumberJson": _json([national_number(m.to) for m in group]),
                    "SignNameJson": _json([m.sms_signature or self.settings.get("sign_name", "") for m in group]),
                    "TemplateCode": template,
                    "TemplateParamJson": _json([m.params for m in group]),
                    "OutId": group[0].batch_reference,
                },
            )
        except ProviderError as error:
            if error.permanent and not error.provider_fault:
                return super().send_batch(group)  # which message it was: each on its own
            return [error] * len(group)
        if not answer.get("BizId"):
            unknown = ProviderError("bad_response", f"no BizId in {answer}", permanent=False, ambiguous=True)
            return [unknown] * len(group)
        result = SendResult(
            str(answer["BizId"]), {"BizId": answer["BizId"], "RequestId": answer.get("RequestId"), "batch": len(group)}
        )
        return [result] * len(group)

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        # SmsReport carries no signature; the secret URL token is the receiver's only protection.
        return True

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        reports = json_reports(body, "an Aliyun SmsReport")
        receipts = []
        for report in reports:
            if not isinstance(report, dict) or not isinstance(report.get("success"), bool) or not report.get("biz_id"):
                raise ReceiptFormatError(f"not an SmsReport entry: {report!r}"[:300])
            receipts.append(
                Receipt(
                    provider=self.kind,
                    provider_message_id=str(report["biz_id"]),
                    message_id=report.get("out_id") or None,
                    to=reported_e164(str(report["phone_number"])) if report.get("phone_number") else None,
                    status="delivered" if report["success"] else "undelivered",
                    code=str(report.get("err_code") or ""),
                    detail=str(report.get("err_msg") or ""),
                    at=china_time(report.get("report_time")),
                )
            )
        return receipts

    def poll_receipts(self, *, since: dt.datetime, phones_and_ids: list[tuple[str, str]] | None = None) -> list[Receipt]:
        """QuerySendDetails per (phone, BizId); Aliyun cannot list by time, so without pairs there is nothing to ask.

        An empty BizId asks for everything sent to the phone since `since`: after an ambiguous timeout
        the receipts' `message_id` (our OutId) tells whether the lost request got through.
        """
        receipts = []
        today = dt.datetime.now(CHINA).date()
        # Aliyun keeps 30 days; SendDate is the Beijing day, so a send near midnight may be filed on the next one.
        first_day = max(since.astimezone(CHINA).date(), today - dt.timedelta(days=29))
        for phone, biz_id in phones_and_ids or []:
            day = first_day
            while day <= today:
                found = self._query_send_details(phone, biz_id, day)
                receipts.extend(found or [])
                if found is not None and biz_id:
                    break
                day += dt.timedelta(days=1)
        return receipts

    def lookup_sent(self, message: OutboundMessage, *, since: dt.datetime) -> SendResult | None:
        """QuerySendDetails lists what was sent to a phone on a day, with our OutId (the message id,
        or the batch reference of a SendBatchSms call): the only way to learn whether a request that
        timed out got through. Its rows carry no BizId, so the result's provider id is empty;
        receipts still match by OutId, or by number for a batch."""
        wanted = {message.message_id, message.batch_reference} - {""}
        today = dt.datetime.now(CHINA).date()
        day = max(since.astimezone(CHINA).date(), today - dt.timedelta(days=29))
        while day <= today:
            for page in range(1, LOOKUP_MAX_PAGES + 1):
                query = {
                    "PhoneNumber": national_number(message.to),
                    "SendDate": day.strftime("%Y%m%d"),
                    "PageSize": "50",
                    "CurrentPage": str(page),
                }
                answer = self.call("QuerySendDetails", query)
                details = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
                for detail in details:
                    if detail.get("OutId") in wanted:
                        return SendResult(
                            provider_message_id="", raw={"reconciled": True, "SendStatus": detail.get("SendStatus")}
                        )
                if len(details) < 50:
                    break
            day += dt.timedelta(days=1)
        return None

    def _query_send_details(self, phone: str, biz_id: str, day: dt.date) -> list[Receipt] | None:
        query = {"PhoneNumber": national_number(phone), "SendDate": day.strftime("%Y%m%d"), "PageSize": "50", "CurrentPage": "1"}
        answer = self.call("QuerySendDetails", {**query, "BizId": biz_id} if biz_id else query)
        details = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
        if not details:
            return None
        receipts = []
        for detail in details:
            # SendStatus 1 = waiting for the carrier's report, 2 = failed, 3 = delivered.
            if detail.get("SendStatus") not in (2, 3):
                continue
            receipts.append(
                Receipt(
                    provider=self.kind,
                    provider_message_id=biz_id or None,
                    message_id=detail.get("OutId") or None,
                    to=reported_e164(str(detail.get("PhoneNum") or phone)),
                    status="delivered" if detail["SendStatus"] == 3 else "undelivered",
                    code=str(detail.get("ErrCode") or ""),
                    detail="",
                    at=_detail_time(detail),
                )
            )
        return receipts


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _detail_time(detail: Mapping[str, Any]) -> dt.datetime:
    try:
        return china_time(detail.get("ReceiveDate") or detail.get("SendDate"))
    except ReceiptFormatError:
        return dt.datetime.now(dt.UTC)


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """Aliyun answers business errors with HTTP 200 and `Code` != "OK", gateway errors with 4xx/5xx and a `Code`."""
    answer = response.json()
    code = answer.get("Code") if isinstance(answer, dict) else None
    if not isinstance(code, str) or (code == "OK" and response.status == 200):
        return None
    detail = str(answer.get("Message") or "")
    if code in THROTTLE_CODES or code.startswith("Throttling"):
        return ProviderError(THROTTLE, f"{code}: {detail}", permanent=False)
    if response.status >= 500 or code in ("InternalError", "ServiceUnavailable"):
        return ProviderError(code, detail, permanent=False)
    if code in PERMANENT_CODES or code.startswith(("InvalidAccessKeyId", "Forbidden")):
        fault = code in PROVIDER_FAULT_CODES or code.startswith(("InvalidAccessKeyId", "Forbidden"))
        return ProviderError(code, detail, permanent=True, provider_fault=fault)
    # Unknown codes: a 4xx is a fault in our request; on a 200 retrying is cheap (bounded by the TTL).
    return ProviderError(code, detail, permanent=response.status >= 400)
