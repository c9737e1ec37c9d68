"""Volcengine (火山引擎) SMS: the volcSMS OpenAPI on sms.volcengineapi.com, signed with Volcengine's
HMAC-SHA256 request signature.

References: volcengine.com/docs/6361/67380 (SendSms, 2020-01-01), /67382 (SendBatchSms, 2021-01-01),
/171584 (the status report push), /173288 and /173291 (send and delivery error codes);
/docs/6369/67269 (the signature method, whose worked examples the tests check) and /68677 (the API
gateway's error codes). GetSmsSendDetails (2021-01-11) is described only by the official SDKs
(volcengine/volc-sdk-golang service/sms, volc-sdk-python volcengine/sms/SmsService.py), and so is
which headers get signed (volc-sdk-python volcengine/auth/SignerV4.py): we do what they do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote, urlsplit

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
from apps.dispatch.providers.http import HttpResponse, invalid_connection_settings, raise_for_response
from apps.dispatch.providers.numbers import reported_e164

ALGORITHM = "HMAC-SHA256"
SERVICE = "volcSMS"
DEFAULT_REGION = "cn-north-1"
DEFAULT_ENDPOINT = "https://sms.volcengineapi.com"
CONTENT_TYPE = "application/json"
SEND_VERSION = "2020-01-01"
BATCH_VERSION = "2021-01-01"
DETAILS_VERSION = "2021-01-11"
MAX_NUMBERS_PER_CALL = 200  # SendSms and SendBatchSms alike
# A lookup reads at most this many pages of a number's sends a day (GetSmsSendDetails takes 1-100 a page).
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 5
# GetSmsSendDetails' dates are Beijing days.
CHINA = dt.timezone(dt.timedelta(hours=8))

# The account's or its configuration's fault, not the message's: another provider may succeed.
# RE:* are the send codes (6361/173288), the rest the gateway's authentication codes (6369/68677).
PROVIDER_FAULT_CODES = {
    "RE:0000",  # authentication failed
    "RE:0001",  # SMS not enabled for the account
    "RE:0002",  # product suspended
    "RE:0003",  # no such message group (SmsAccount)
    "RE:0004",  # signature unknown or not approved
    "RE:0005",  # template unknown or not approved
    "RE:0007",  # our IP is not allow-listed
    "RE:0010",  # account in arrears
    "RE:0011",  # not enabled for the number's region
    "RE:0012",  # the message group may not send this type
    "InvalidAccessKey",
    "SignatureDoesNotMatch",
    "InvalidAuthorization",
    "InvalidCredential",
    "MissingSignature",
    "MissingAuthenticationToken",
    "InvalidSecretToken",
    "AccessDenied",
    "LackProjectPolicy",
}
# Refused for good: the number (RE:0006) or our request.
PERMANENT_CODES = PROVIDER_FAULT_CODES | {"RE:0006", "RE:0009", "MissingParameter", "MissingRequestInfo"}
REASONS = {"RE:0006": "invalid_number"}  # by what they mean (errors.REASONS); the rest by their kind
# RE:0013 is the sending cap set in the console; the others the gateway's rate limits.
THROTTLE_CODES = {"FlowLimitExceeded", "AccountFlowLimitExceeded", "RE:0013"}
TRANSIENT_CODES = {
    "RE:0500",  # "unknown error, call again"
    "InternalError",
    "InternalServiceError",
    "InternalServiceTimeout",
    "FailToConnect",
    "ServiceUnavailableTemp",
    "UndefinedError",
}
# GetSmsSendDetails' `status` (the Go SDK's SendLogStatus): 1 sent without a report yet, 2 failed,
# 3 delivered, 4 the code was verified, 5 the link was clicked (both only after delivery).
DETAIL_STATUS: dict[Any, Literal["delivered", "undelivered"]] = {2: "undelivered", 3: "delivered", 4: "delivered", 5: "delivered"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def canonical_query(query: Mapping[str, str]) -> str:
    """Names sorted, names and values RFC 3986-encoded (only A-Z a-z 0-9 - _ . ~ stay literal)."""
    return "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in sorted(query.items()))


def signature(
    secret_access_key: str,
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    signed_headers: Mapping[str, str],
    payload: bytes,
    x_date: str,
    region: str,
    service: str,
) -> str:
    """The hex signature of a request: an HMAC chain over the secret, the day, the region, the
    service and "request" gives the key; the string signed ends with the canonical request's hash."""
    headers = {name.lower(): value.strip() for name, value in signed_headers.items()}
    names = sorted(headers)
    canonical_request = "\n".join(
        [
            method,
            path or "/",
            canonical_query(query),
            "".join(f"{name}:{headers[name]}\n" for name in names),
            ";".join(names),
            sha256_hex(payload),
        ]
    )
    day = x_date[:8]
    to_sign = f"{ALGORITHM}\n{x_date}\n{day}/{region}/{service}/request\n{sha256_hex(canonical_request.encode())}"
    key = _hmac(_hmac(_hmac(_hmac(secret_access_key.encode(), day), region), service), "request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def signed_request_headers(
    access_key_id: str,
    secret_access_key: str,
    *,
    host: str,
    query: Mapping[str, str],
    payload: bytes,
    region: str,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The headers of a signed JSON POST to "/": the SDKs' SignerV4 signs Content-Type, Host and
    every X- header (X-Date, X-Content-Sha256), and so do we."""
    x_date = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": CONTENT_TYPE, "Host": host, "X-Date": x_date, "X-Content-Sha256": sha256_hex(payload)}
    sig = signature(
        secret_access_key,
        method="POST",
        path="/",
        query=query,
        signed_headers=headers,
        payload=payload,
        x_date=x_date,
        region=region,
        service=SERVICE,
    )
    names = ";".join(sorted(name.lower() for name in headers))
    credential = f"{access_key_id}/{x_date[:8]}/{region}/{SERVICE}/request"
    return {**headers, "Authorization": f"{ALGORITHM} Credential={credential}, SignedHeaders={names}, Signature={sig}"}


def phone_number(e164_number: str) -> str:
    """Mainland numbers as their 11 digits (the form the documents' examples and reports use),
    others in E.164, which Volcengine requires for them."""
    return e164_number[3:] if e164_number.startswith("+86") and len(e164_number) == 14 else e164_number


def reported_at(value: Any) -> dt.datetime | None:
    """A report's epoch time: milliseconds in the push (documented); GetSmsSendDetails does not say,
    so a value too small to be milliseconds since 1973 is taken as seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return dt.datetime.fromtimestamp(value / 1000 if value >= 10**11 else value, dt.UTC)


def error_for(code: str, detail: str, status: int) -> ProviderError:
    if code in THROTTLE_CODES:
        return ProviderError(THROTTLE, f"{code}: {detail}", permanent=False)
    if code in TRANSIENT_CODES or status >= 500:
        return ProviderError(code, detail, permanent=False)
    if code in PERMANENT_CODES:
        return ProviderError(code, detail, permanent=True, provider_fault=code in PROVIDER_FAULT_CODES, reason=REASONS.get(code))
    # Unknown codes: a 4xx is a fault in our request; on a 200 retrying is cheap (bounded by the TTL).
    return ProviderError(code, detail, permanent=status >= 400)


class VolcengineSms(ProviderAdapter):
    """Settings: access_key_id, secret_access_key, sms_account (the message group id, 消息组ID),
    sign_name (used when a template has no signature), region (default cn-north-1), endpoint
    (default https://sms.volcengineapi.com), timeouts.

    `send` is a SendSms to one number with our message id as `Tag` (reports carry it back as `ext`).
    `send_batch` puts the messages of one signature and template into SendBatchSms calls of up to
    200 numbers, each with its own parameters and its own MessageID, by which receipts match (the
    call's one Tag cannot name each message, so it sends none); a call refused for a reason that may
    be one message's (a bad number) is retried message by message. Polled with GetSmsSendDetails per
    (phone, MessageID). After a timeout or a crash mid-send, `lookup_sent` lists the number's sends
    (GetSmsSendDetails without a MessageID): they carry no Tag, so a send is ours when its signature,
    template and time fit and its rendered content holds each of our parameters' values (a batch call
    sends no Tag either, so its messages are found the same way). The status push is unsigned: the receiver
    must sit behind a secret per-provider URL token; its document names no answer body, so it gets
    the default 200.
    """

    kind = "volcengine"
    default_endpoint = DEFAULT_ENDPOINT
    template_based = True
    template_id_format = (re.compile(r"(?:ST|SPT)_[0-9A-Za-z]{4,32}"), "a Volcengine template id like ST_6f8c0a1b")
    reports_delivery = True
    signed_receipts = False  # status reports carry no signature
    polls_by_message = True  # GetSmsSendDetails asks per (phone, MessageID)
    lookup_sees_unreported = True  # a send is listed from its acceptance on (status 1, no receipt yet)
    sends_batches = True
    max_batch = MAX_NUMBERS_PER_CALL

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("access_key_id", "secret_access_key", "sms_account") if not settings.get(name)]
        return invalid + invalid_connection_settings(settings)

    def call(self, action: str, version: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One signed call; returns the `Result` object of a successful answer."""
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        query = {"Action": action, "Version": version}
        headers = signed_request_headers(
            self.settings["access_key_id"],
            self.settings["secret_access_key"],
            host=urlsplit(self.endpoint).netloc,
            query=query,
            payload=payload,
            region=self.settings.get("region") or DEFAULT_REGION,
        )
        response = self.http.request("POST", f"{self.endpoint}/?{canonical_query(query)}", headers=headers, body=payload)
        raise_for_response(response, _error_reply)
        answer = response.json()
        result = answer.get("Result") if isinstance(answer, dict) else None
        if not isinstance(result, dict):
            raise ProviderError("bad_response", f"HTTP {response.status}: no Result object", permanent=False, ambiguous=True)
        return result

    def _sign(self, message: OutboundMessage) -> str:
        return message.sms_signature or self.settings.get("sign_name", "")

    def _template(self, message: OutboundMessage) -> str:
        if not message.provider_template_id:
            raise ProviderError(
                "missing_template", "the template has no Volcengine template id", permanent=True, provider_fault=True
            )
        return message.provider_template_id

    def send(self, message: OutboundMessage) -> SendResult:
        result = self.call(
            "SendSms",
            SEND_VERSION,
            {
                "SmsAccount": self.settings["sms_account"],
                "Sign": self._sign(message),
                "TemplateID": self._template(message),
                "TemplateParam": _json(message.params),
                "PhoneNumbers": phone_number(message.to),
                "Tag": message.message_id,
            },
        )
        [message_id] = _message_ids(result, 1)
        return SendResult(message_id, {"MessageID": message_id})

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        return send_grouped(messages, lambda m: (self._sign(m), m.provider_template_id), MAX_NUMBERS_PER_CALL, self._send_group)

    def _send_group(self, group: list[OutboundMessage]) -> list[SendResult | ProviderError]:
        if len(group) == 1:
            return super().send_batch(group)
        try:
            result = self.call(
                "SendBatchSms",
                BATCH_VERSION,
                {
                    "SmsAccount": self.settings["sms_account"],
                    "Sign": self._sign(group[0]),
                    "TemplateID": self._template(group[0]),
                    "Messages": [{"PhoneNumber": phone_number(m.to), "TemplateParam": _json(m.params)} for m in group],
                },
            )
            message_ids = _message_ids(result, len(group))
        except ProviderError as error:
            if error.permanent and not error.provider_fault:
                return super().send_batch(group)  # which message it was: each on its own
            return [error] * len(group)
        return [SendResult(message_id, {"MessageID": message_id, "batch": len(group)}) for message_id in message_ids]

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        # The status push carries no signature; the secret URL token is the receiver's only protection.
        return True

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        receipts = []
        for report in json_reports(body, "a Volcengine status report"):
            if not isinstance(report, dict) or not report.get("message_id") or report.get("status_code") in (None, ""):
                raise ReceiptFormatError(f"not a status report: {report!r}"[:300])
            at = reported_at(report.get("recv_time")) or reported_at(report.get("send_time"))
            if at is None:
                raise ReceiptFormatError(f"no millisecond recv_time or send_time in {report!r}"[:300])
            status_code = str(report["status_code"])
            mobile = str(report.get("mobile") or "")
            receipts.append(
                Receipt(
                    provider=self.kind,
                    provider_message_id=str(report["message_id"]),
                    message_id=str(report.get("ext") or "") or None,
                    to=reported_e164(mobile) if mobile else None,
                    status="delivered" if status_code == "0" else "undelivered",
                    code=status_code,
                    detail=str(report.get("description") or ""),
                    at=at,
                )
            )
        return receipts

    def poll_receipts(self, *, since: dt.datetime, phones_and_ids: list[tuple[str, str]] | None = None) -> list[Receipt]:
        """GetSmsSendDetails per (phone, MessageID), day by day from `since`'s Beijing day (a send near
        midnight may be filed on the next one) until the message is found."""
        receipts: list[Receipt] = []
        today = dt.datetime.now(CHINA).date()
        for phone, message_id in phones_and_ids or []:
            if not message_id:
                continue  # the details carry no Tag: without the MessageID nothing says which is ours
            day = since.astimezone(CHINA).date()
            while day <= today:
                found = self._send_details(phone, message_id, day)
                if found is not None:
                    receipts.extend(found)
                    break
                day += dt.timedelta(days=1)
        return receipts

    def lookup_sent(self, message: OutboundMessage, *, since: dt.datetime) -> SendResult | None:
        """The number's sends day by day (Beijing days) from `since`'s, looked through for ours (see the
        class). Two of our messages alike in all of that, to one number, the later one in doubt, would be
        taken for each other: the lookup then says "sent" for a message the provider has once."""
        sign, template = self._sign(message), self._template(message)
        day, today = since.astimezone(CHINA).date(), dt.datetime.now(CHINA).date()
        while day <= today:
            for page in range(1, LOOKUP_MAX_PAGES + 1):
                rows = self._details_page(phone_number(message.to), "", day, page, LOOKUP_PAGE_SIZE)
                for row in rows:
                    if _is_ours(row, message, sign, template, since):
                        found = str(row["messageId"])
                        return SendResult(found, {"MessageID": found, "reconciled": True, "status": row.get("status")})
                if len(rows) < LOOKUP_PAGE_SIZE:
                    break
            day += dt.timedelta(days=1)
        return None

    def _details_page(self, phone: str, message_id: str, day: dt.date, page: int, size: int) -> list[dict[str, Any]]:
        result = self.call(
            "GetSmsSendDetails",
            DETAILS_VERSION,
            {
                "subAccount": self.settings["sms_account"],
                "phoneNumber": phone,
                "messageId": message_id,
                "sendDate": day.strftime("%Y%m%d"),
                "pageSize": size,
                "pageIndex": page,
            },
        )
        return [row for row in result.get("sendDetailsResults") or [] if isinstance(row, dict)]

    def _send_details(self, phone: str, message_id: str, day: dt.date) -> list[Receipt] | None:
        """The final statuses of one message on one day; None when that day does not have it."""
        rows = self._details_page(phone_number(phone), message_id, day, 1, 10)
        if not rows:
            return None
        return [
            Receipt(
                provider=self.kind,
                provider_message_id=str(row.get("messageId") or message_id),
                message_id=None,
                to=phone,
                status=DETAIL_STATUS[row["status"]],
                code=str(row.get("errorCode") or ""),
                detail=str(row.get("errorMessage") or ""),
                at=reported_at(row.get("receiptTime")) or reported_at(row.get("sendTime")) or dt.datetime.now(dt.UTC),
            )
            for row in rows
            if row.get("status") in DETAIL_STATUS
        ]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_ours(row: Mapping[str, Any], message: OutboundMessage, sign: str, template: str, since: dt.datetime) -> bool:
    """A listed send with our signature and template, sent since `since`, whose content (the template
    rendered by Volcengine, text we do not have) holds every value we gave it."""
    if not row.get("messageId") or row.get("signature") != sign or row.get("templateID") != template:
        return False
    sent_at = reported_at(row.get("sendTime"))
    if sent_at is None or sent_at < since:
        return False
    content = str(row.get("content") or "")
    return all(str(value) in content for value in message.params.values())


def _message_ids(result: Mapping[str, Any], count: int) -> list[str]:
    """Result.MessageID: one per number, in the order sent."""
    message_ids = result.get("MessageID")
    if not isinstance(message_ids, list) or len(message_ids) != count or not all(message_ids):
        raise ProviderError("bad_response", f"expected {count} MessageID in {result}"[:300], permanent=False, ambiguous=True)
    return [str(message_id) for message_id in message_ids]


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """Errors come in `ResponseMetadata.Error`: the gateway's with their HTTP status, the SMS
    service's RE:* codes with a status the documents do not give, so the code decides."""
    answer = response.json()
    metadata = answer.get("ResponseMetadata") if isinstance(answer, dict) else None
    error = metadata.get("Error") if isinstance(metadata, dict) else None
    if not isinstance(error, dict):
        return None
    return error_for(str(error.get("Code") or ""), str(error.get("Message") or ""), response.status)
