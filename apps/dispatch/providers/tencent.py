"""Tencent Cloud SMS: API 3.0, version 2021-01-11, signed with TC3-HMAC-SHA256.

References: cloud.tencent.com SMS API SendSms / PullSmsSendStatus / PullSmsSendStatusByPhoneNumber
(document 382/55976: BeginTime at most 7 days back, Offset fixed at 0, Limit ≤ 100), "Signature v3" (the worked
example of the canonical request and the four-step HMAC key derivation), and "SMS sending status
notification" (the status push, a JSON array).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

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

API_VERSION = "2021-01-11"
SERVICE = "sms"
DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com"
DEFAULT_REGION = "ap-guangzhou"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
# Push and pull times are Beijing time without a zone.
CHINA = dt.timezone(dt.timedelta(hours=8))
PULL_LIMIT = 100
MAX_NUMBERS_PER_CALL = 200  # SendSms: PhoneNumberSet holds at most 200 numbers
PULL_MAX_PAGES = 20
# PullSmsSendStatusByPhoneNumber reaches this far back.
LOOKUP_REACH = dt.timedelta(days=7)

PERMANENT_PREFIXES = (
    "AuthFailure",
    "InvalidParameter",
    "MissingParameter",
    "UnauthorizedOperation",
    "UnsupportedOperation",
    "UnknownParameter",
    "FailedOperation",
)
TRANSIENT_CODES = {"FailedOperation.FailResolvePacket", "FailedOperation.JsonParseFail"}
# The provider account's or its configuration's fault, not the message's: fail over.
PROVIDER_FAULT_PREFIXES = (
    "AuthFailure",
    "UnauthorizedOperation",
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "FailedOperation.TemplateUnapprovedOrNotExist",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.TemplateIncorrectOrUnapproved",
)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def tc3_signature(
    secret_key: str, *, service: str, signed_headers: Mapping[str, str], payload: bytes, timestamp: int, method: str = "POST"
) -> str:
    """The hex signature of a request to path "/" with no query, as in Tencent's signature v3 example."""
    canonical_headers = "".join(f"{name.lower()}:{value.strip().lower()}\n" for name, value in sorted(signed_headers.items()))
    names = ";".join(sorted(name.lower() for name in signed_headers))
    canonical_request = "\n".join([method, "/", "", canonical_headers, names, sha256_hex(payload)])
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    to_sign = f"{ALGORITHM}\n{timestamp}\n{date}/{service}/tc3_request\n{sha256_hex(canonical_request.encode())}"
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def tc3_authorization(secret_id: str, secret_key: str, *, service: str, host: str, payload: bytes, timestamp: int) -> str:
    """Signs content-type and host only, as the official SDKs do."""
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    signed = {"content-type": CONTENT_TYPE, "host": host}
    sig = tc3_signature(secret_key, service=service, signed_headers=signed, payload=payload, timestamp=timestamp)
    return f"{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, SignedHeaders=content-type;host, Signature={sig}"


def china_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ReceiptFormatError(f"expected a 'YYYY-MM-DD hh:mm:ss' time, got {value!r}")
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError as error:
        raise ReceiptFormatError(str(error)) from error


def _template_params(message: OutboundMessage) -> list[str]:
    # Positional: Tencent templates number their parameters {1}, {2}, … in template order.
    return [str(message.params.get(name, "")) for name in message.variables]


def error_for(code: str, detail: str) -> ProviderError:
    if code.startswith("LimitExceeded") or code == "RequestLimitExceeded":
        return ProviderError(THROTTLE, f"{code}: {detail}", permanent=False)
    permanent = code.startswith(PERMANENT_PREFIXES) and code not in TRANSIENT_CODES
    return ProviderError(code, detail, permanent=permanent, provider_fault=code.startswith(PROVIDER_FAULT_PREFIXES))


class TencentSms(ProviderAdapter):
    """Settings: secret_id, secret_key, sdk_app_id, region (default ap-guangzhou), endpoint (default
    https://sms.tencentcloudapi.com), sign_name (used when a template has no signature), timeouts.

    `send` is one request per message, with our message id as `SessionContext`. `send_batch` puts
    the messages that share signature, template and parameters (a notice to many numbers) into one
    SendSms of up to 200 numbers: each number gets its own status and SerialNo, so every message keeps
    its own outcome and provider id (receipts match by SerialNo; such a request's SessionContext,
    one per request, is the engine's batch reference). The status push is unsigned: the receiver
    must sit behind a secret per-provider URL token.

    `lookup_sent` pulls the number's statuses (PullSmsSendStatusByPhoneNumber), which echo each
    request's SessionContext. They are delivery reports: a message Tencent accepted shows there only
    once the carrier reported it, so a miss is not a "no" (`lookup_sees_unreported`).
    """

    kind = "tencent"
    default_endpoint = DEFAULT_ENDPOINT
    template_based = True
    template_id_format = (re.compile(r"\d{1,20}"), "a numeric Tencent template id")
    reports_delivery = True
    signed_receipts = False  # status pushes carry no signature
    receipt_ack = (200, "application/json", b'{"result": 0, "errmsg": "OK"}')
    sends_batches = True
    max_batch = MAX_NUMBERS_PER_CALL
    lookup_sees_unreported = False

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("secret_id", "secret_key", "sdk_app_id") if not settings.get(name)]
        return invalid + invalid_connection_settings(settings)

    def call(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One API 3.0 call; returns the `Response` object of a successful answer."""
        payload = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
        host = urlsplit(self.endpoint).netloc
        timestamp = int(time.time())
        headers = {
            "Authorization": tc3_authorization(
                self.settings["secret_id"],
                self.settings["secret_key"],
                service=SERVICE,
                host=host,
                payload=payload,
                timestamp=timestamp,
            ),
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.settings.get("region") or DEFAULT_REGION,
        }
        response = self.http.request("POST", self.endpoint + "/", headers=headers, body=payload)
        raise_for_response(response, _error_reply)
        answer = response.json()
        body = answer.get("Response") if isinstance(answer, dict) else None
        if not isinstance(body, dict):
            raise ProviderError("bad_response", f"HTTP {response.status}: no Response object", permanent=False, ambiguous=True)
        return body

    def _send_sms(self, messages: Sequence[OutboundMessage], session_context: str) -> list[SendResult | ProviderError]:
        """One SendSms for messages of one signature, template and parameters → their outcomes in order."""
        first = messages[0]
        if not first.provider_template_id:
            raise ProviderError(
                "missing_template", "the template has no Tencent template id", permanent=True, provider_fault=True
            )
        answer = self.call(
            "SendSms",
            {
                "PhoneNumberSet": [message.to for message in messages],
                "SmsSdkAppId": self.settings["sdk_app_id"],
                "SignName": first.sms_signature or self.settings.get("sign_name", ""),
                "TemplateId": first.provider_template_id,
                "TemplateParamSet": _template_params(first),
                "SessionContext": session_context,
            },
        )
        statuses = answer.get("SendStatusSet")
        if not isinstance(statuses, list) or not all(isinstance(s, dict) for s in statuses):
            raise ProviderError("bad_response", f"no SendStatusSet in {answer}"[:300], permanent=False, ambiguous=True)
        by_phone: dict[str, list[dict[str, Any]]] = {}
        for status in statuses:
            by_phone.setdefault(str(status.get("PhoneNumber", "")), []).append(status)
        outcomes: list[SendResult | ProviderError] = []
        for message in messages:
            # One status per number, in the order sent; a single number may be given without its "+".
            mine = (
                by_phone.get(message.to) or by_phone.get(message.to.lstrip("+")) or (statuses[:1] if len(messages) == 1 else [])
            )
            if not mine:
                outcomes.append(ProviderError("bad_response", "no status for this number", permanent=False, ambiguous=True))
                continue
            status = mine.pop(0)
            if status.get("Code") != "Ok":
                outcomes.append(error_for(str(status.get("Code")), str(status.get("Message") or "")))
            else:
                outcomes.append(
                    SendResult(str(status["SerialNo"]), {"SerialNo": status["SerialNo"], "RequestId": answer.get("RequestId")})
                )
        return outcomes

    def send(self, message: OutboundMessage) -> SendResult:
        [outcome] = self._send_sms([message], message.message_id)
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        return send_grouped(
            messages,
            lambda m: (m.sms_signature, m.provider_template_id, tuple(_template_params(m))),
            MAX_NUMBERS_PER_CALL,
            self._send_group,
        )

    def _send_group(self, group: list[OutboundMessage]) -> list[SendResult | ProviderError]:
        try:
            # SessionContext, which pulled statuses echo: a lone message's id, else the call's batch reference.
            return self._send_sms(group, group[0].message_id if len(group) == 1 else group[0].batch_reference)
        except ProviderError as error:
            return [error] * len(group)

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        # The status push carries no signature; the secret URL token is the receiver's only protection.
        return True

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        reports = json_reports(body, "a Tencent status push")
        receipts = []
        for report in reports:
            if not isinstance(report, dict) or report.get("report_status") not in ("SUCCESS", "FAIL") or not report.get("sid"):
                raise ReceiptFormatError(f"not a status report: {report!r}"[:300])
            mobile = str(report.get("mobile") or "")
            receipts.append(
                Receipt(
                    provider=self.kind,
                    provider_message_id=str(report["sid"]),
                    message_id=None,
                    to=f"+{report.get('nationcode') or '86'}{mobile}" if mobile else None,
                    status="delivered" if report["report_status"] == "SUCCESS" else "undelivered",
                    code=str(report.get("errmsg") or ""),
                    detail=str(report.get("description") or ""),
                    at=china_time(report.get("user_receive_time")),
                )
            )
        return receipts

    def poll_receipts(self, *, since: dt.datetime, phones_and_ids: list[tuple[str, str]] | None = None) -> list[Receipt]:
        """PullSmsSendStatus: each status is handed out once, whatever `since` and the ids say."""
        receipts: list[Receipt] = []
        for _ in range(PULL_MAX_PAGES):
            answer = self.call("PullSmsSendStatus", {"Limit": PULL_LIMIT, "SmsSdkAppId": self.settings["sdk_app_id"]})
            statuses = answer.get("PullSmsSendStatusSet") or []
            for status in statuses:
                if not isinstance(status, dict) or status.get("ReportStatus") not in ("SUCCESS", "FAIL"):
                    continue
                receipts.append(
                    Receipt(
                        provider=self.kind,
                        provider_message_id=str(status.get("SerialNo") or "") or None,
                        message_id=status.get("SessionContext") or None,
                        to=status.get("PhoneNumber") or None,
                        status="delivered" if status["ReportStatus"] == "SUCCESS" else "undelivered",
                        code=str(status.get("Description") or ""),
                        detail="",
                        at=_time_or_now(status.get("UserReceiveTime")),
                    )
                )
            if len(statuses) < PULL_LIMIT:
                break
        return receipts

    def lookup_sent(self, message: OutboundMessage, *, since: dt.datetime) -> SendResult | None:
        """The number's statuses since `since` (Tencent keeps 7 days), looked through for the
        SessionContext our request carried: the message id, or the batch reference of a call for
        several numbers. Offset is fixed at 0, so only the newest 100 statuses can be seen."""
        wanted = {message.message_id, message.batch_reference} - {""}
        begin = max(since, dt.datetime.now(dt.UTC) - LOOKUP_REACH + dt.timedelta(minutes=1))
        answer = self.call(
            "PullSmsSendStatusByPhoneNumber",
            {
                "BeginTime": int(begin.timestamp()),
                "Offset": 0,
                "Limit": PULL_LIMIT,
                "PhoneNumber": message.to,
                "SmsSdkAppId": self.settings["sdk_app_id"],
            },
        )
        for status in answer.get("PullSmsSendStatusSet") or []:
            if isinstance(status, dict) and status.get("SessionContext") in wanted:
                return SendResult(
                    str(status.get("SerialNo") or ""), {"reconciled": True, "ReportStatus": status.get("ReportStatus")}
                )
        return None


def _time_or_now(value: Any) -> dt.datetime:
    try:
        return china_time(value)
    except ReceiptFormatError:
        return dt.datetime.now(dt.UTC)


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """API 3.0 answers errors with HTTP 200 and `Response.Error`."""
    answer = response.json()
    error = (
        answer.get("Response", {}).get("Error") if isinstance(answer, dict) and isinstance(answer.get("Response"), dict) else None
    )
    if not isinstance(error, dict):
        return None
    code = str(error.get("Code") or "")
    result = error_for(code, str(error.get("Message") or ""))
    if response.status >= 500:
        result.permanent = False
    return result
