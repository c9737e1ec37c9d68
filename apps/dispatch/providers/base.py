"""The one interface every provider adapter implements; plain Python, usable from Celery tasks.

Transient vs permanent is decided here, in the adapters, once: callers only look at `ProviderError`.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from apps.dispatch.providers.errors import THROTTLE, LookupUnsupported, ProviderError, ReceiptFormatError
from apps.dispatch.providers.http import HttpClient, timeouts_from

# What an adapter needs, from one module (the errors live apart so that the HTTP seam can raise them).
__all__ = [
    "THROTTLE",
    "LookupUnsupported",
    "OutboundMessage",
    "ProviderAdapter",
    "ProviderError",
    "Receipt",
    "ReceiptFormatError",
    "SendResult",
]


@dataclass(frozen=True)
class OutboundMessage:
    message_id: str
    to: str
    content: str
    params: dict[str, str] = field(default_factory=dict)
    variables: tuple[str, ...] = ()
    provider_template_id: str | None = None
    sms_signature: str = ""
    callback_url: str | None = None
    # Channels other than SMS: the subject/notification title, the escaped HTML rendering (e-mail),
    # when the message stops being worth delivering (push TTL) and its lane (bulk → low push priority).
    title: str = ""
    html: str = ""
    expires_at: dt.datetime | None = None
    priority: str = "normal"
    # Our reference for the provider call that carries several messages (recorded on each of them
    # before the call): a batch API takes one client reference, and a lookup after a crash asks for it.
    batch_reference: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    raw: dict[str, Any]


def send_grouped(
    messages: Sequence[OutboundMessage],
    key: Callable[[OutboundMessage], Hashable],
    size: int,
    send_group: Callable[[list[OutboundMessage]], list[SendResult | ProviderError]],
) -> list[SendResult | ProviderError]:
    """A batch API's calls: the messages that share `key`, at most `size` per call; each message's
    outcome comes back in the order the messages were given."""
    groups: dict[Hashable, list[int]] = {}
    for index, message in enumerate(messages):
        groups.setdefault(key(message), []).append(index)
    outcomes: list[SendResult | ProviderError | None] = [None] * len(messages)
    for indexes in groups.values():
        for start in range(0, len(indexes), size):
            part = indexes[start : start + size]
            for i, outcome in zip(part, send_group([messages[i] for i in part]), strict=True):
                outcomes[i] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def json_reports(body: bytes, what: str) -> list[Any]:
    """A pushed report that must be a JSON array (Aliyun's SmsReport, Tencent's status push)."""
    try:
        reports = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ReceiptFormatError(f"not JSON: {error}") from error
    if not isinstance(reports, list):
        raise ReceiptFormatError(f"{what} is a JSON array")
    return reports


@dataclass(frozen=True)
class Receipt:
    provider: str
    provider_message_id: str | None
    message_id: str | None
    to: str | None
    status: Literal["delivered", "undelivered"]
    code: str
    detail: str
    at: dt.datetime


class ProviderAdapter(abc.ABC):
    kind: ClassVar[str]
    channel: ClassVar[str] = "sms"
    template_based: ClassVar[bool]
    # How many messages a caller should hand to one `send_batch` call.
    max_batch: ClassVar[int] = 100
    # Whether `send_batch` is cheaper than one `send` per message (a batch call, or requests sent
    # concurrently from one place): the engine then hands it a chunk's messages for this provider at
    # once; otherwise the engine sends each message on its own.
    sends_batches: ClassVar[bool] = False
    # Settings every adapter understands; see `timeouts_from`.
    common_settings: ClassVar[tuple[str, ...]] = ("endpoint", "connect_timeout", "read_timeout")
    # The provider's API base URL, unless the `endpoint` setting points elsewhere (a simulator, a region).
    default_endpoint: ClassVar[str] = ""
    # Approved template ids that a template-based provider issues: (pattern, how one looks), checked
    # when a template is saved; None: any non-empty id.
    template_id_format: ClassVar[tuple[re.Pattern[str], str] | None] = None
    # Receipts. Whether the provider reports delivery at all (only then can a message miss a report).
    reports_delivery: ClassVar[bool] = False
    # Whether its pushed reports carry a signature of their own; unsigned ones are trusted only with
    # the provider row's secret `receipt_token` in the push URL.
    signed_receipts: ClassVar[bool] = True
    # The answer a pushed report gets so that the provider does not push it again: (status, content type, body).
    receipt_ack: ClassVar[tuple[int, str, bytes]] = (200, "application/json", b'{"ok": true}')
    # Whether `poll_receipts` asks about (phone, provider id) pairs rather than a time window.
    polls_by_message: ClassVar[bool] = False
    # Whether `lookup_sent` sees a message the provider accepted but has no delivery report for yet.
    # When it does not (Tencent lists reports only), a miss proves nothing until the receipt window
    # has passed (apps/dispatch/delivery/holds.py).
    lookup_sees_unreported: ClassVar[bool] = True

    def __init__(self, settings: Mapping[str, str], http: HttpClient | None = None) -> None:
        self.settings = dict(settings)
        self.http = http or HttpClient(*timeouts_from(self.settings))

    @classmethod
    @abc.abstractmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        """Names of the settings that are missing or invalid (empty when the adapter can run)."""

    @abc.abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Hands one message to the provider; raises `ProviderError`."""

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        """One outcome per message, in order. One message's failure never fails the others."""
        results: list[SendResult | ProviderError] = []
        for message in messages:
            try:
                results.append(self.send(message))
            except ProviderError as error:
                results.append(error)
        return results

    @abc.abstractmethod
    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a pushed status report really comes from the provider."""

    @abc.abstractmethod
    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        """The final statuses in a pushed report (intermediate ones are skipped); raises `ReceiptFormatError`."""

    @property
    def endpoint(self) -> str:
        return (self.settings.get("endpoint") or self.default_endpoint).rstrip("/")

    @classmethod
    def polls_receipts(cls) -> bool:
        """Whether the provider's statuses are fetched by `poll_receipts` (beat, every 30 s)."""
        return cls.poll_receipts is not ProviderAdapter.poll_receipts

    @property
    def can_be_asked(self) -> bool:
        """Whether `lookup_sent` can tell if the provider already has a message."""
        return type(self).lookup_sent is not ProviderAdapter.lookup_sent

    def lookup_sent(self, message: OutboundMessage, *, since: dt.datetime) -> SendResult | None:
        """Whether the provider already accepted `message` (after a timeout or a crash mid-send), as it
        was sent at or after `since`: its result, None when it did not, LookupUnsupported when the
        provider cannot be asked. `message.batch_reference` is set when the attempt was a call for
        several messages."""
        raise LookupUnsupported(self.kind)

    def poll_receipts(self, *, since: dt.datetime, phones_and_ids: list[tuple[str, str]] | None = None) -> list[Receipt]:
        """Final statuses fetched from the provider's query API; `phones_and_ids` are (phone, provider id)."""
        return []
