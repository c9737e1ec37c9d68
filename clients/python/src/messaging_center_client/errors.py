"""Errors: every failed call raises a `MessagingCenterError` carrying the contract's error body.

The API answers every error with `{"code", "detail", "errors"?}`; `code` is stable and is what code
should branch on. Subclasses exist for the common codes so that `except NotFoundError:` reads well.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any


class MessagingCenterError(Exception):
    """An error answered by the API, or a request that could not reach it.

    `status` is the HTTP status (None when no answer came), `code` the contract's snake_case code,
    `detail` its human sentence, `errors` the per-field messages of a validation error,
    `retry_after` the seconds the server asked to wait (429/503), `headers` the answer's headers.
    """

    def __init__(
        self,
        detail: str,
        *,
        code: str,
        status: int | None = None,
        errors: Mapping[str, list[str]] | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status
        self.errors: dict[str, list[str]] = dict(errors or {})
        self.retry_after = retry_after
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, detail={self.detail!r})"


class APIConnectionError(MessagingCenterError):
    """The API could not be reached, or the connection broke before an answer (after the retries)."""


class InvalidResponseError(MessagingCenterError):
    """The API answered with something that is not the contract's JSON."""


class ValidationError(MessagingCenterError):
    """400: the request is malformed or a field is invalid; `errors` names the fields."""


class TooManyRecipientsError(ValidationError):
    """400 `too_many_recipients`: more than 1,000 recipients in one send."""


class MissingParamsError(ValidationError):
    """400 `missing_params`: template variables that no entry supplies."""


class AuthenticationError(MessagingCenterError):
    """401 `not_authenticated`: no key, an unknown key, or a revoked one."""


class PermissionDeniedError(MessagingCenterError):
    """403, e.g. `account_disabled`."""


class NotFoundError(MessagingCenterError):
    """404 `not_found`: an unknown object, or another account's."""


class TemplateNotFoundError(NotFoundError):
    """404 `template_not_found`: an unknown or deleted template code."""


class ConflictError(MessagingCenterError):
    """409."""


class IdempotencyConflictError(ConflictError):
    """409 `idempotency_conflict`: the same Idempotency-Key with a different body."""


class NotCancelableError(ConflictError):
    """409 `not_cancelable`: the message was already handed to a provider (or is final)."""


class PayloadTooLargeError(MessagingCenterError):
    """413 `payload_too_large`: a body over 5 MiB."""


class RateLimitError(MessagingCenterError):
    """429: a limit was hit: `rate_limited` (the account's request rate; see `retry_after`),
    `frequency_limited` (verification codes to one address), or `quota_exceeded` below."""


class QuotaExceededError(RateLimitError):
    """429 `quota_exceeded`: the account's daily message quota is used up."""


class UnavailableError(MessagingCenterError):
    """503 `unavailable`: a dependency is down and the request was not accepted."""


_BY_CODE: dict[str, type[MessagingCenterError]] = {
    "too_many_recipients": TooManyRecipientsError,
    "missing_params": MissingParamsError,
    "template_not_found": TemplateNotFoundError,
    "idempotency_conflict": IdempotencyConflictError,
    "not_cancelable": NotCancelableError,
    "quota_exceeded": QuotaExceededError,
}
_BY_STATUS: dict[int, type[MessagingCenterError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    503: UnavailableError,
}


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> MessagingCenterError:
    """The exception for an error answer: the contract's body when there is one, else a summary."""
    retry_after = retry_after_seconds(headers.get("retry-after"))
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("code"), str):
        code: str = parsed["code"]
        detail = str(parsed.get("detail") or code)
        raw_errors = parsed.get("errors")
        errors = (
            {
                str(field): [str(m) for m in (messages if isinstance(messages, list) else [messages])]
                for field, messages in raw_errors.items()
            }
            if isinstance(raw_errors, dict)
            else None
        )
    else:
        code = "http_error"
        text = body.decode("utf-8", "replace").strip()
        detail = f"HTTP {status}" + (f": {text[:200]}" if text else "")
        errors = None
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or MessagingCenterError
    return cls(detail, code=code, status=status, errors=errors, retry_after=retry_after, headers=headers)
