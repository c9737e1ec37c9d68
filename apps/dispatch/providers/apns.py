"""Apple Push Notification service, the HTTP/2 provider API with token-based (ES256 JWT) auth.

References: developer.apple.com "Sending notification requests to APNs" (`POST /3/device/<token>`,
the apns-* headers), "Establishing a token-based connection to APNs" (JWT with `kid`, `iss`, `iat`;
refresh no more often than every 20 minutes, no less than every 60), and "Handling notification
responses from APNs" (status codes and `reason` strings).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Mapping

import httpx

from apps.dispatch.providers import jws
from apps.dispatch.providers.base import (
    THROTTLE,
    OutboundMessage,
    ProviderAdapter,
    ProviderError,
    Receipt,
    SendResult,
)
from apps.dispatch.providers.http import (
    HttpClient,
    HttpResponse,
    invalid_connection_settings,
    raise_for_response,
    timeouts_from,
)

DEFAULT_ENDPOINT = "https://api.push.apple.com"
MAX_PAYLOAD_BYTES = 4096
# Apple rejects a JWT older than an hour and one renewed within 20 minutes (TooManyProviderTokenUpdates).
JWT_LIFETIME_S = 50 * 60
POOL_MAX_CONNECTIONS = 16
REASON_CODES = {
    "Unregistered": "unregistered_token",
    "BadDeviceToken": "invalid_token",
    "DeviceTokenNotForTopic": "invalid_token",
    "PayloadTooLarge": "payload_too_large",
}
# A namespace for apns-id: the same message always carries the same UUID.
APNS_ID_NAMESPACE = uuid.UUID("5b7c3e2a-8f0e-4a8c-9d6e-6a1f2c0b9e71")

_client_lock = threading.Lock()
_client: tuple[int, httpx.Client] | None = None
_jwt_lock = threading.Lock()
_jwts: dict[tuple[str, str, str], tuple[str, float]] = {}


def _http2_client() -> httpx.Client:
    """APNs speaks HTTP/2 only, which the shared seam (http.py, HTTP/1.1) cannot: APNs gets this one
    pooled httpx client per process (a prefork child must not reuse its parent's connections).
    HTTP/2 multiplexes concurrent pushes over few connections, as Apple asks."""
    global _client
    pid = os.getpid()
    if _client is None or _client[0] != pid:
        with _client_lock:
            if _client is None or _client[0] != pid:
                # http1=False: HTTP/2 also over cleartext (prior knowledge), as the simulator serves it.
                limits = httpx.Limits(max_connections=POOL_MAX_CONNECTIONS, max_keepalive_connections=POOL_MAX_CONNECTIONS)
                _client = (pid, httpx.Client(http1=False, http2=True, limits=limits))
    return _client[1]


def provider_token(team_id: str, key_id: str, private_key: str, *, renew: bool = False) -> str:
    """The ES256 JWT for this key, reused for 50 minutes within the process."""
    cache_key = (team_id, key_id, hashlib.sha256(private_key.encode()).hexdigest())
    with _jwt_lock:
        cached = _jwts.get(cache_key)
        if cached is not None and not renew and time.time() - cached[1] < JWT_LIFETIME_S:
            return cached[0]
        issued_at = time.time()
        token = jws.sign({"iss": team_id, "iat": int(issued_at)}, private_key, alg="ES256", kid=key_id)
        _jwts[cache_key] = (token, issued_at)
        return token


def payload(message: OutboundMessage) -> bytes:
    alert = {"title": message.title, "body": message.content} if message.title else {"body": message.content}
    custom = {name: value for name, value in message.params.items() if name != "aps"}
    return json.dumps({"aps": {"alert": alert, "sound": "default"}, **custom}, ensure_ascii=False, separators=(",", ":")).encode()


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """APNs answers errors as {"reason": "..."} with the status code."""
    if response.status < 400:
        return None
    reason = _reason(response)
    if not reason:
        return None
    if reason == "TooManyRequests" or response.status == 429:
        return ProviderError(THROTTLE, reason, permanent=False)
    if reason in REASON_CODES:
        return ProviderError(REASON_CODES[reason], reason, permanent=True)
    return ProviderError(reason, f"HTTP {response.status}", permanent=response.status < 500)


class ApnsPush(ProviderAdapter):
    """Settings: team_id, key_id, private_key (the .p8 auth key, PEM), topic (the app's bundle id),
    endpoint (default https://api.push.apple.com; https://api.sandbox.push.apple.com for development
    builds), timeouts.

    `to` is the device token. apns-priority is 5 for bulk messages, else 10; apns-expiration is the
    message's `expires_at` (0: deliver now or never). The provider id is the apns-id, a UUID derived
    from our message id. APNs sends no delivery reports.
    """

    kind = "apns"
    default_endpoint = DEFAULT_ENDPOINT
    channel = "push"
    template_based = False

    def __init__(self, settings: Mapping[str, str], http: HttpClient | None = None) -> None:
        super().__init__(settings, http)
        connect, read = timeouts_from(self.settings)
        self.timeout = httpx.Timeout(read, connect=connect)

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("team_id", "key_id", "private_key", "topic") if not settings.get(name)]
        if settings.get("private_key"):
            try:
                jws.load_private_key(settings["private_key"], "ES256")
            except jws.InvalidKeyError:
                invalid.append("private_key")
        return invalid + invalid_connection_settings(settings)

    def send(self, message: OutboundMessage) -> SendResult:
        body = payload(message)
        if len(body) > MAX_PAYLOAD_BYTES:
            raise ProviderError(
                "payload_too_large", f"the payload is {len(body)} bytes; APNs allows {MAX_PAYLOAD_BYTES}", permanent=True
            )
        apns_id = str(uuid.uuid5(APNS_ID_NAMESPACE, message.message_id))
        headers = {
            "apns-topic": self.settings["topic"],
            "apns-push-type": "alert",
            "apns-priority": "5" if message.priority == "bulk" else "10",
            "apns-expiration": expiration(message.expires_at),
            "apns-id": apns_id,
            "content-type": "application/json",
        }
        response = self._post(message.to, headers, body, renew=False)
        if response.status == 403 and _reason(response) == "ExpiredProviderToken":
            response = self._post(message.to, headers, body, renew=True)
        raise_for_response(response, _error_reply)
        return SendResult(response.headers.get("apns-id") or apns_id, {"apns-id": response.headers.get("apns-id")})

    def _post(self, device_token: str, headers: dict[str, str], body: bytes, *, renew: bool) -> HttpResponse:
        try:
            jwt = provider_token(self.settings["team_id"], self.settings["key_id"], self.settings["private_key"], renew=renew)
        except jws.InvalidKeyError as error:
            raise ProviderError("invalid_settings", str(error), permanent=True) from error
        url = f"{self.endpoint}/3/device/{device_token}"
        try:
            response = _http2_client().post(
                url, content=body, headers={**headers, "authorization": f"bearer {jwt}"}, timeout=self.timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise ProviderError("connect_error", repr(error), permanent=False) from error
        except httpx.TimeoutException as error:
            raise ProviderError("timeout", f"no answer within {self.timeout.read} s", permanent=False, ambiguous=True) from error
        except httpx.HTTPError as error:
            # The stream broke after the request went out: APNs may have taken it.
            raise ProviderError("connection_reset", repr(error), permanent=False, ambiguous=True) from error
        return HttpResponse(response.status_code, response.headers, response.content)

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        return False

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        return []


def _reason(response: HttpResponse) -> str:
    answer = response.json()
    return str(answer.get("reason") or "") if isinstance(answer, dict) else ""


def expiration(expires_at: dt.datetime | None) -> str:
    """apns-expiration: when APNs stops trying; 0 means deliver now or drop."""
    return str(int(expires_at.timestamp())) if expires_at else "0"
