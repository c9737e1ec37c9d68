"""JPush (极光推送) REST API v3 push, HTTP basic auth with appKey:masterSecret.

References: docs.jiguang.cn JPush "REST API v3 Push" (`POST /v3/push`: platform, audience
registration_id, notification android/ios, options time_to_live/apns_production, the length limits)
and "HTTP return codes / error codes" (1004 auth, 1011 no such audience, 2002/2003 rate limits).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from apps.dispatch.providers.base import (
    THROTTLE,
    OutboundMessage,
    ProviderAdapter,
    ProviderError,
    Receipt,
    SendResult,
)
from apps.dispatch.providers.http import (
    HttpResponse,
    invalid_connection_settings,
    raise_for_response,
)

DEFAULT_ENDPOINT = "https://api.jpush.cn"
# JPush's limits: the notification and message parts together 4000 bytes; the iOS part, which it
# repackages for APNs, 3584 bytes.
MAX_PAYLOAD_BYTES = 4000
MAX_IOS_BYTES = 3584
MAX_TTL_S = 10 * 24 * 3600
THROTTLE_CODES = {2002, 2003}
TRANSIENT_CODES = {1000, 1030}
TOKEN_CODES = {1011: "invalid_token"}


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """Errors are {"error": {"code", "message"}, "msg_id"} with a 4xx/5xx status."""
    answer = response.json()
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        return None
    code, detail = error["code"], str(error.get("message") or "")
    if code in THROTTLE_CODES or response.status == 429:
        return ProviderError(THROTTLE, f"{code}: {detail}", permanent=False)
    if code in TOKEN_CODES:
        return ProviderError(TOKEN_CODES[code], f"{code}: {detail}", permanent=True)
    return ProviderError(str(code), detail, permanent=code not in TRANSIENT_CODES and response.status < 500)


class JPush(ProviderAdapter):
    """Settings: app_key, master_secret, apns_production ("true"/"false", default true), endpoint
    (default https://api.jpush.cn), timeouts.

    `to` is the registration id; `title`/`content` become the notification, `params` its extras. The
    message TTL becomes `time_to_live` (JPush keeps offline messages at most 10 days). The provider id
    is JPush's msg_id. JPush pushes no delivery reports here (its report API is pull-only, by msg_id).
    """

    kind = "jpush"
    default_endpoint = DEFAULT_ENDPOINT
    channel = "push"
    template_based = False

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("app_key", "master_secret") if not settings.get(name)]
        if settings.get("apns_production", "true").lower() not in ("true", "false"):
            invalid.append("apns_production")
        return invalid + invalid_connection_settings(settings)

    def build(self, message: OutboundMessage) -> dict[str, Any]:
        extras = dict(message.params)
        android: dict[str, Any] = {"alert": message.content, "extras": extras}
        ios: dict[str, Any] = {"alert": message.content, "sound": "default", "extras": extras}
        if message.title:
            android["title"] = message.title
            ios["alert"] = {"title": message.title, "body": message.content}
        options: dict[str, Any] = {"apns_production": self.settings.get("apns_production", "true").lower() == "true"}
        if message.expires_at is not None:
            ttl = (message.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
            options["time_to_live"] = min(max(int(ttl), 0), MAX_TTL_S)
        return {
            "platform": "all",
            "audience": {"registration_id": [message.to]},
            "notification": {"alert": message.content, "android": android, "ios": ios},
            "options": options,
        }

    def send(self, message: OutboundMessage) -> SendResult:
        request = self.build(message)
        size, ios_size = _size(request["notification"]), _size(request["notification"]["ios"])
        if size > MAX_PAYLOAD_BYTES or ios_size > MAX_IOS_BYTES:
            raise ProviderError(
                "payload_too_large",
                f"the notification is {size} bytes (iOS part {ios_size}); JPush allows {MAX_PAYLOAD_BYTES} ({MAX_IOS_BYTES})",
                permanent=True,
            )
        credentials = base64.b64encode(f"{self.settings['app_key']}:{self.settings['master_secret']}".encode()).decode()
        response = self.http.request(
            "POST",
            f"{self.endpoint}/v3/push",
            headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/json"},
            body=json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode(),
        )
        raise_for_response(response, _error_reply)
        answer = response.json()
        if not isinstance(answer, dict) or not answer.get("msg_id"):
            raise ProviderError("bad_response", f"HTTP {response.status}: no msg_id", permanent=False, ambiguous=True)
        return SendResult(str(answer["msg_id"]), {"msg_id": answer["msg_id"], "sendno": answer.get("sendno")})

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        return False

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        return []
