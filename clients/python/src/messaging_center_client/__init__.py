"""Messaging Center's Python SDK.

from messaging_center_client import Client
mc = Client(base_url="http://127.0.0.1:8000", api_key="…")   # or MC_BASE_URL / MC_API_KEY
batch = mc.messages.send(template="order_shipped", to=[{"phone": "+8613800138000"}], params={"order_no": "A1"})
for m in mc.messages.list(batch_id=batch.batch_id):
    print(m.id, m.status)
"""

from messaging_center_client._version import __version__
from messaging_center_client.async_client import AsyncClient
from messaging_center_client.client import Client
from messaging_center_client.errors import (
    APIConnectionError,
    AuthenticationError,
    ConflictError,
    IdempotencyConflictError,
    InvalidResponseError,
    MessagingCenterError,
    MissingParamsError,
    NotCancelableError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    TemplateNotFoundError,
    TooManyRecipientsError,
    UnavailableError,
    ValidationError,
)
from messaging_center_client.models import (
    FINAL_STATUSES,
    Account,
    InboxItem,
    InboxPage,
    Message,
    MessageEvent,
    Page,
    Preview,
    PushToken,
    Recipient,
    SendOutcome,
    SendResult,
    Stats,
    StatsGroup,
    Template,
    Verification,
    VerificationCheck,
)
from messaging_center_client.signatures import verify_signature

__all__ = [
    "FINAL_STATUSES",
    "APIConnectionError",
    "Account",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "IdempotencyConflictError",
    "InboxItem",
    "InboxPage",
    "InvalidResponseError",
    "Message",
    "MessageEvent",
    "MessagingCenterError",
    "MissingParamsError",
    "NotCancelableError",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Preview",
    "PushToken",
    "QuotaExceededError",
    "RateLimitError",
    "Recipient",
    "SendOutcome",
    "SendResult",
    "Stats",
    "StatsGroup",
    "Template",
    "TemplateNotFoundError",
    "TooManyRecipientsError",
    "UnavailableError",
    "ValidationError",
    "Verification",
    "VerificationCheck",
    "__version__",
    "verify_signature",
]
