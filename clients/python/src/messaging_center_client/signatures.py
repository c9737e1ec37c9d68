"""Status callbacks: checking `X-MC-Signature` on what the service POSTs to the callback URL."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-MC-Signature"
DEFAULT_TOLERANCE = 300


def _header(headers: Mapping[str, str] | str) -> str | None:
    if isinstance(headers, str):
        return headers
    value = headers.get(SIGNATURE_HEADER)
    if value is not None:
        return value
    wanted = {SIGNATURE_HEADER.lower(), "http_" + SIGNATURE_HEADER.lower().replace("-", "_")}  # plain dicts, WSGI environ
    return next((v for k, v in headers.items() if k.lower() in wanted), None)


def verify_signature(
    headers: Mapping[str, str] | str,
    body: bytes | str,
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """True when `X-MC-Signature: t=<unix>,v1=<hex>` is the HMAC-SHA256, keyed by `secret`, of
    `"<t>.<body>"` and `t` lies within `tolerance` seconds of now (stale or replayed callbacks fail).

    `headers` is the request's headers (any mapping; the lookup ignores case, and a WSGI environ's
    `HTTP_X_MC_SIGNATURE` is found too) or the header's value; `body` is the raw body exactly as
    received, not re-serialized JSON. Comparison is constant-time; several `v1` are accepted.
    """
    header = _header(headers)
    if not header or not secret:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            signatures.append(value.strip())
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)
