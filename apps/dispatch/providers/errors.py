"""What a provider call can go wrong with, shared by the adapters and the HTTP seam they use."""

from __future__ import annotations

# Our code for every kind of rate limiting (the provider's own code goes in the detail).
THROTTLE = "throttle"


class ProviderError(Exception):
    """A send that did not succeed.

    `code` is the provider's own error code, or ours: `throttle` for every kind of rate limiting
    (the provider's code is then in `detail`), `timeout`, `connect_error`, `connection_reset`,
    `http_<status>`, `bad_response`, `missing_template`, `payload_too_large`, and for push tokens
    `unregistered_token`/`invalid_token` (the engine deactivates the token). `ambiguous` means the
    request may have reached the provider: reconcile (poll or wait for a receipt) before sending again.
    `provider_fault` means the provider account or its configuration is at fault (credentials,
    balance, an unapproved template or signature), not the message: another provider may succeed.
    """

    def __init__(self, code: str, detail: str, *, permanent: bool, ambiguous: bool = False, provider_fault: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.permanent = permanent
        self.ambiguous = ambiguous
        self.provider_fault = provider_fault

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.code!r}, {self.detail!r}, permanent={self.permanent}, ambiguous={self.ambiguous}, "
            f"provider_fault={self.provider_fault})"
        )


class LookupUnsupported(Exception):
    """The provider has no API to ask whether it already has a message."""


class ReceiptFormatError(ValueError):
    """A status report that is not in the provider's format (the receiver answers 400)."""
