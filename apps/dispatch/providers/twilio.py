"""Twilio Programmable Messaging: the Messages resource of API 2010-04-01, and its StatusCallback.

References: twilio.com/docs/messaging/api/message-resource (create; read with the To and
DateSent>= filters, pages by next_page_uri), /docs/usage/security
("Validating requests": HMAC-SHA1 of the full URL followed by the sorted POST parameters,
base64, keyed with the auth token) and /docs/api/errors.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from apps.dispatch.providers.base import (
    THROTTLE,
    OutboundMessage,
    ProviderAdapter,
    ProviderError,
    Receipt,
    ReceiptFormatError,
    SendResult,
)
from apps.dispatch.providers.http import (
    HttpRequest,
    HttpResponse,
    invalid_connection_settings,
    raise_for_response,
)

DEFAULT_ENDPOINT = "https://api.twilio.com"
MESSAGE_ID_PARAM = "message_id"

# Errors that no retry can fix: bad credentials, bad or unreachable 'To', bad 'From', blocked content.
PERMANENT_CODES = {
    20003,  # authentication failed
    20404,  # the account or resource does not exist
    21211,  # invalid 'To' phone number
    21212,  # invalid 'From' phone number
    21408,  # permission to send to this region is not enabled
    21606,  # the 'From' number is not a valid message-capable number
    21610,  # the recipient replied STOP
    21612,  # the 'To' number cannot be reached from this 'From'
    21614,  # 'To' is not a mobile number
    21617,  # the body exceeds 1600 characters
    30006,  # landline or unreachable carrier
}
# Of those, the Twilio account's or its configuration's fault: fail over.
PROVIDER_FAULT_CODES = {20003, 20404, 21212, 21408, 21606}
THROTTLE_CODES = {20429, 14107, 30022}
FINAL_STATUSES = {"delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}
LOOKUP_PAGE_SIZE = 50
LOOKUP_MAX_PAGES = 10


def compute_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given and without/with its default port: proxies disagree about keeping it."""
    parts = urlsplit(url)
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is not None:
        stripped = urlunsplit(parts._replace(netloc=host))
        return [url, stripped]
    return [url, urlunsplit(parts._replace(netloc=f"{host}:{default_port}"))]


def with_message_id(callback_url: str, message_id: str) -> str:
    """Twilio has no client reference; the StatusCallback URL carries our id back in its query."""
    parts = urlsplit(callback_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), (MESSAGE_ID_PARAM, message_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class TwilioSms(ProviderAdapter):
    """Settings: account_sid, auth_token, from_number or messaging_service_sid, endpoint (default
    https://api.twilio.com), timeouts.

    Free text: `content` is sent as the body. The StatusCallback is the message's `callback_url` plus
    `?message_id=<our id>`; the report itself does not echo it, so `Receipt.message_id` is None and
    the receiver reads the id from its own URL when it needs it.

    `lookup_sent` lists the Messages to the number sent since `since`'s day: a Message resource
    carries no client reference (nor its StatusCallback), so ours is the outbound one with our body,
    created since `since`. Two of our messages with the same text to the same number inside that
    window cannot be told apart; a message Twilio still holds queued has no date_sent yet and is not
    listed (the engine asks seconds after the send, when Twilio has sent what it accepted).
    """

    kind = "twilio"
    default_endpoint = DEFAULT_ENDPOINT
    template_based = False
    reports_delivery = True
    receipt_ack = (204, "text/plain", b"")

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("account_sid", "auth_token") if not settings.get(name)]
        if not settings.get("from_number") and not settings.get("messaging_service_sid"):
            invalid.append("from_number")
        return invalid + invalid_connection_settings(settings)

    # No batch call in the Messages API: a chunk's messages go as concurrent requests, all handed to
    # the event loop at once (docs/performance.md, Providers' HTTP seam).
    sends_batches = True

    def send(self, message: OutboundMessage) -> SendResult:
        request = self._request(message)
        return self._result(self.http.request(request.method, request.url, headers=request.headers, body=request.body))

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        outcomes: list[SendResult | ProviderError] = []
        for response in self.http.request_many([self._request(message) for message in messages]):
            try:
                outcomes.append(response if isinstance(response, ProviderError) else self._result(response))
            except ProviderError as error:
                outcomes.append(error)
        return outcomes

    def lookup_sent(self, message: OutboundMessage, *, since: dt.datetime) -> SendResult | None:
        query = {"To": message.to, "DateSent>": since.astimezone(dt.UTC).date().isoformat(), "PageSize": LOOKUP_PAGE_SIZE}
        url: str | None = f"{self._messages_url()}?{urlencode(query)}"
        for _ in range(LOOKUP_MAX_PAGES):
            if url is None:
                break
            response = self.http.request("GET", url, headers=self._headers())
            raise_for_response(response, _error_reply)
            page = response.json()
            if not isinstance(page, dict) or not isinstance(page.get("messages"), list):
                raise ProviderError("bad_response", f"HTTP {response.status}: no messages list", permanent=False)
            for listed in page["messages"]:
                if isinstance(listed, dict) and _is_ours(listed, message, since):
                    return SendResult(str(listed["sid"]), {"reconciled": True, "status": listed.get("status")})
            next_page = page.get("next_page_uri")
            url = f"{self.endpoint}{next_page}" if isinstance(next_page, str) and next_page else None
        return None

    def _messages_url(self) -> str:
        return f"{self.endpoint}/2010-04-01/Accounts/{self.settings['account_sid']}/Messages.json"

    def _headers(self) -> dict[str, str]:
        credentials = base64.b64encode(f"{self.settings['account_sid']}:{self.settings['auth_token']}".encode()).decode()
        return {"Authorization": f"Basic {credentials}", "Accept": "application/json"}

    def _request(self, message: OutboundMessage) -> HttpRequest:
        fields = {"To": message.to, "Body": message.content}
        if self.settings.get("messaging_service_sid"):
            fields["MessagingServiceSid"] = self.settings["messaging_service_sid"]
        else:
            fields["From"] = self.settings["from_number"]
        if message.callback_url:
            fields["StatusCallback"] = with_message_id(message.callback_url, message.message_id)
        return HttpRequest(
            "POST",
            self._messages_url(),
            headers={**self._headers(), "Content-Type": "application/x-www-form-urlencoded"},
            body=urlencode(fields).encode(),
        )

    @staticmethod
    def _result(response: HttpResponse) -> SendResult:
        raise_for_response(response, _error_reply)
        answer = response.json()
        if not isinstance(answer, dict) or not answer.get("sid"):
            raise ProviderError("bad_response", f"HTTP {response.status}: no sid", permanent=False, ambiguous=True)
        return SendResult(str(answer["sid"]), {"sid": answer["sid"], "status": answer.get("status")})

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        given = _header(headers, "X-Twilio-Signature")
        if not given or not self.settings.get("auth_token"):
            return False
        params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True) if method.upper() == "POST" else []
        return any(
            hmac.compare_digest(compute_signature(self.settings["auth_token"], candidate, params), given)
            for candidate in _url_variants(url)
        )

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError) as error:
            raise ReceiptFormatError(f"not a form body: {error}") from error
        sid = fields.get("MessageSid") or fields.get("SmsSid")
        status = fields.get("MessageStatus") or fields.get("SmsStatus")
        if not sid or not status:
            raise ReceiptFormatError("a Twilio status callback has MessageSid and MessageStatus")
        if status not in FINAL_STATUSES:
            return []
        error_code = fields.get("ErrorCode") or ""
        return [
            Receipt(
                provider=self.kind,
                provider_message_id=sid,
                message_id=None,
                to=fields.get("To") or None,
                status="delivered" if FINAL_STATUSES[status] == "delivered" else "undelivered",
                code=error_code or status,
                detail=fields.get("ErrorMessage") or status,
                at=dt.datetime.now(dt.UTC),
            )
        ]


def _is_ours(listed: Mapping[str, Any], message: OutboundMessage, since: dt.datetime) -> bool:
    """An outbound Message with our number and body, made since `since`, that Twilio did not give up on
    before sending (`failed`: it never left Twilio)."""
    if not str(listed.get("direction", "")).startswith("outbound") or listed.get("status") == "failed":
        return False
    if listed.get("to") != message.to or listed.get("body") != message.content:
        return False
    try:
        created = parsedate_to_datetime(str(listed.get("date_created")))
    except (TypeError, ValueError):
        return False
    return created >= since


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """Twilio errors are JSON with a numeric `code` (twilio.com/docs/api/errors) and the HTTP status."""
    if response.status < 400:
        return None
    answer = response.json()
    if not isinstance(answer, dict) or not isinstance(answer.get("code"), int):
        return None
    code = answer["code"]
    detail = str(answer.get("message") or "")
    if code in THROTTLE_CODES or response.status == 429:
        return ProviderError(THROTTLE, f"{code}: {detail}", permanent=False)
    permanent = code in PERMANENT_CODES or (400 <= response.status < 500 and response.status != 408)
    return ProviderError(
        str(code), detail, permanent=permanent and response.status < 500, provider_fault=code in PROVIDER_FAULT_CODES
    )
