"""What a provider call can go wrong with, shared by the adapters and the HTTP seam they use."""

from __future__ import annotations

# Our code for every kind of rate limiting (the provider's own code goes in the detail).
THROTTLE = "throttle"

# What a call's outcome was, in the same words for every provider (ProviderError.reason): `accepted`, or
# why not. Attempts are counted by it (dispatch_attempt_rollup, /stats `errors`, mc_provider_attempts_total).
ACCEPTED = "accepted"
REASONS = (
    ACCEPTED,
    "invalid_number",  # the provider says the number is not one (or not reachable from the sender)
    "blocked",  # the provider or carrier blocked it: blacklist, opt-out (STOP), content control
    "content_rejected",  # template parameters or content refused, too long
    "invalid_token",  # push: the device token is unregistered or invalid
    "throttled",  # rate limited, by the provider or its gateway
    "provider_config",  # the provider account or its configuration (credentials, balance, template, signature)
    "timeout",  # no answer in time: the request may have reached the provider
    "unreachable",  # no connection, or it was reset
    "provider_error",  # the provider failed (5xx, an answer we cannot read, an internal error)
    "rejected",  # any other refusal of this message
)
_BY_OUR_CODE = {
    THROTTLE: "throttled",
    "timeout": "timeout",
    "connect_error": "unreachable",
    "connection_reset": "unreachable",
    "bad_response": "provider_error",
    "missing_template": "provider_config",
    "payload_too_large": "content_rejected",
    "unregistered_token": "invalid_token",
    "invalid_token": "invalid_token",
}


def reason_for(code: str, *, permanent: bool, provider_fault: bool) -> str:
    """The normalized reason of a failed call from our code and the error's kind (an adapter knows
    better for its own codes and says so: ProviderError(reason=…))."""
    if code in _BY_OUR_CODE:
        return _BY_OUR_CODE[code]
    if provider_fault:
        return "provider_config"
    if code.startswith("http_5") or not permanent:
        return "provider_error"
    return "rejected"


class ProviderError(Exception):
    """A send that did not succeed.

    `code` is the provider's own error code, or ours: `throttle` for every kind of rate limiting
    (the provider's code is then in `detail`), `timeout`, `connect_error`, `connection_reset`,
    `http_<status>`, `bad_response`, `missing_template`, `payload_too_large`, and for push tokens
    `unregistered_token`/`invalid_token` (the engine deactivates the token). `ambiguous` means the
    request may have reached the provider: reconcile (poll or wait for a receipt) before sending again.
    `provider_fault` means the provider account or its configuration is at fault (credentials,
    balance, an unapproved template or signature), not the message: another provider may succeed.
    `reason` is the outcome in every provider's words (REASONS), beside its own `code`.
    """

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        permanent: bool,
        ambiguous: bool = False,
        provider_fault: bool = False,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.permanent = permanent
        self.ambiguous = ambiguous
        self.provider_fault = provider_fault
        self.reason = reason or reason_for(code, permanent=permanent, provider_fault=provider_fault)

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.code!r}, {self.detail!r}, permanent={self.permanent}, ambiguous={self.ambiguous}, "
            f"provider_fault={self.provider_fault})"
        )


class LookupUnsupported(Exception):
    """The provider has no API to ask whether it already has a message."""


class ReceiptFormatError(ValueError):
    """A status report that is not in the provider's format (the receiver answers 400)."""
