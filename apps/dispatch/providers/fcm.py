"""Firebase Cloud Messaging, HTTP v1 API, authorised by a service account (OAuth2 JWT bearer grant).

References: firebase.google.com/docs/cloud-messaging: "Migrate from legacy FCM APIs to HTTP v1",
the REST reference of `projects.messages.send`, and "FCM error codes" (ErrorCode enum:
UNREGISTERED, INVALID_ARGUMENT, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, SENDER_ID_MISMATCH,
THIRD_PARTY_AUTH_ERROR); developers.google.com/identity/protocols/oauth2/service-account
("Preparing to make an authorized API call": the JWT claim set and the token request).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

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
from apps.dispatch.providers.tokens import IssuedToken, SharedToken, call_with_token

DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 — a URL, not a secret
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
# FCM's limit for a message's payload (notification + data).
MAX_PAYLOAD_BYTES = 4000
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
# The registration token is bad for good: the engine deactivates it.
TOKEN_ERRORS = {"UNREGISTERED": "unregistered_token", "INVALID_ARGUMENT": "invalid_token"}


def service_account(settings: Mapping[str, str]) -> dict[str, str] | None:
    """The parsed `service_account_json`, or None when it lacks what signing needs."""
    try:
        account = json.loads(settings.get("service_account_json") or "")
    except ValueError:
        return None
    if not isinstance(account, dict) or not all(isinstance(account.get(name, ""), str) for name in SERVICE_ACCOUNT_FIELDS):
        return None
    if not account.get("client_email") or not account.get("private_key"):
        return None
    return account


def payload_size(message: Mapping[str, Any]) -> int:
    return len(json.dumps({k: message[k] for k in ("notification", "data") if k in message}, ensure_ascii=False).encode())


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """Google APIs answer {"error": {"code", "message", "status", "details": [{"errorCode"}]}}."""
    if response.status < 400:
        return None
    answer = response.json()
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return None
    status = str(error.get("status") or "")
    details = error.get("details")
    if not isinstance(details, list):
        details = []
    fcm_code = next(
        (str(d.get("errorCode")) for d in details if isinstance(d, dict) and d.get("@type") == FCM_ERROR_TYPE), status
    )
    detail = f"{fcm_code}: {error.get('message') or ''}"
    if fcm_code == "UNREGISTERED" or (fcm_code == "INVALID_ARGUMENT" and _about_the_token(error, details)):
        return ProviderError(TOKEN_ERRORS[fcm_code], detail, permanent=True)
    if fcm_code in ("QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED") or response.status == 429:
        return ProviderError(THROTTLE, detail, permanent=False)
    if response.status >= 500 or fcm_code in ("UNAVAILABLE", "INTERNAL"):
        return ProviderError(fcm_code or f"http_{response.status}", detail, permanent=False)
    return ProviderError(fcm_code or f"http_{response.status}", detail, permanent=True)


def _about_the_token(error: dict[str, Any], details: list[Any]) -> bool:
    """INVALID_ARGUMENT also means a bad payload (unknown field, reserved data key, bad TTL): only a
    complaint about the registration token may make the engine deactivate the token."""
    violations = [v for d in details if isinstance(d, dict) for v in d.get("fieldViolations") or [] if isinstance(v, dict)]
    if violations:
        return any(v.get("field") == "message.token" for v in violations)
    return "registration token" in str(error.get("message") or "").lower()


def _oauth_error(response: HttpResponse) -> ProviderError | None:
    """The token endpoint answers RFC 6749 errors: {"error": "invalid_grant", "error_description"}."""
    answer = response.json()
    if response.status < 400 or not isinstance(answer, dict) or not isinstance(answer.get("error"), str):
        return None
    return ProviderError(answer["error"], str(answer.get("error_description") or ""), permanent=response.status < 500)


class FcmPush(ProviderAdapter):
    """Settings: project_id, service_account_json (the key file Firebase hands out: client_email,
    private_key, private_key_id, token_uri), endpoint (default https://fcm.googleapis.com), timeouts.

    `to` is the device registration token; `title`/`content` become the notification, `params` the
    data. The message TTL goes to `android.ttl` and `apns-expiration`; bulk messages are sent with
    normal priority. The provider id is the message name FCM answers
    (projects/<p>/messages/<id>). FCM sends no delivery reports.
    """

    kind = "fcm"
    default_endpoint = DEFAULT_ENDPOINT
    channel = "push"
    template_based = False

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [] if settings.get("project_id") else ["project_id"]
        account = service_account(settings)
        if account is None:
            invalid.append("service_account_json")
        else:
            try:
                jws.load_private_key(account["private_key"], "RS256")
            except jws.InvalidKeyError:
                invalid.append("service_account_json")
        return invalid + invalid_connection_settings(settings)

    def __init__(self, settings: Mapping[str, str], http: HttpClient | None = None) -> None:
        super().__init__(settings, http)
        self.account = service_account(self.settings)

    def shared_token(self) -> SharedToken:
        # One OAuth token per service account, whichever project it sends for.
        key = f"fcm:{(self.account or {}).get('client_email', '')}"
        return SharedToken(key, self._fetch_token, wait_s=sum(timeouts_from(self.settings)) + 1)

    def _fetch_token(self) -> IssuedToken:
        account = self.account
        if account is None:
            raise ProviderError("invalid_settings", "service_account_json lacks client_email or private_key", permanent=True)
        token_uri = account.get("token_uri") or DEFAULT_TOKEN_URI
        now = int(time.time())
        claims = {"iss": account["client_email"], "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + ASSERTION_LIFETIME_S}
        try:
            assertion = jws.sign(claims, account["private_key"], alg="RS256", kid=account.get("private_key_id") or None)
        except jws.InvalidKeyError as error:
            raise ProviderError("invalid_settings", str(error), permanent=True) from error
        response = self.http.request(
            "POST",
            token_uri,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=urlencode({"grant_type": GRANT_TYPE, "assertion": assertion}).encode(),
        )
        raise_for_response(response, _oauth_error)
        answer = response.json()
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise ProviderError("bad_response", f"HTTP {response.status}: no access_token", permanent=False)
        return IssuedToken(str(answer["access_token"]), int(answer.get("expires_in") or 3600))

    def build(self, message: OutboundMessage) -> dict[str, Any]:
        fcm_message: dict[str, Any] = {
            "token": message.to,
            "notification": {"title": message.title, "body": message.content},
            "data": {name: str(value) for name, value in message.params.items()},
            "android": {"priority": "normal" if message.priority == "bulk" else "high"},
        }
        if message.expires_at is not None:
            ttl = max(int((message.expires_at - dt.datetime.now(dt.UTC)).total_seconds()), 0)
            fcm_message["android"]["ttl"] = f"{ttl}s"
            fcm_message["apns"] = {"headers": {"apns-expiration": str(int(message.expires_at.timestamp()))}}
        return fcm_message

    def send(self, message: OutboundMessage) -> SendResult:
        fcm_message = self.build(message)
        size = payload_size(fcm_message)
        if size > MAX_PAYLOAD_BYTES:
            raise ProviderError(
                "payload_too_large", f"notification + data is {size} bytes; FCM allows {MAX_PAYLOAD_BYTES}", permanent=True
            )
        body = json.dumps({"message": fcm_message}, ensure_ascii=False, separators=(",", ":")).encode()
        url = f"{self.endpoint}/v1/projects/{quote(self.settings['project_id'], safe='')}/messages:send"

        def post(access_token: str) -> HttpResponse:
            headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json; charset=utf-8"}
            return self.http.request("POST", url, headers=headers, body=body)

        # 401 UNAUTHENTICATED: the OAuth token expired or was revoked early.
        response = call_with_token(self.shared_token(), post, lambda r: r.status == 401)
        raise_for_response(response, _error_reply)
        answer = response.json()
        if not isinstance(answer, dict) or not answer.get("name"):
            raise ProviderError("bad_response", f"HTTP {response.status}: no message name", permanent=False, ambiguous=True)
        return SendResult(str(answer["name"]), {"name": answer["name"]})

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        # FCM has no delivery-report webhook (only BigQuery export): nothing genuine ever arrives.
        return False

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        return []
