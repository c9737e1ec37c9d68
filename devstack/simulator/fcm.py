"""FCM HTTP v1 as the simulator serves it: Google's OAuth2 token endpoint (`POST /token`, the JWT
bearer grant, verified with the service account's public key) and `POST
/v1/projects/{project}/messages:send`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from apps.dispatch.providers import jws
from apps.dispatch.providers.fcm import FCM_ERROR_TYPE, GRANT_TYPE, SCOPE
from devstack.simulator.common import STATE_KEY, delay, json_response, simulate
from devstack.simulator.state import Record

PROVIDER = "fcm"
AUTH_PATH = "/token"
SEND_PATH = "/v1/projects/{project}/messages:send"
MAX_CLOCK_SKEW_S = 300
MAX_ASSERTION_LIFETIME_S = 3600


def service_account_json(base_url: str, credentials: dict[str, str]) -> str:
    """The key file of the simulated service account, its token_uri pointing at the simulator."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": credentials["project_id"],
            "private_key_id": "sim-key-1",
            "private_key": credentials["private_key"],
            "client_email": credentials["client_email"],
            "token_uri": f"{base_url.rstrip('/')}{AUTH_PATH}",
        }
    )


def _oauth_error(error: str, description: str) -> web.Response:
    return json_response({"error": error, "error_description": description}, 400)


def _fcm_error(
    status: int, grpc_status: str, message: str, error_code: str | None = None, violations: list[dict[str, str]] | None = None
) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": grpc_status}
    if error_code:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    if violations:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}]
    return json_response({"error": error}, status)


async def token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    credentials = state.credentials[PROVIDER]
    fields = dict(parse_qsl((await request.read()).decode("utf-8", "replace")))
    if fields.get("grant_type") != GRANT_TYPE:
        return _oauth_error("unsupported_grant_type", "Invalid grant_type: " + fields.get("grant_type", ""))
    public_key = jws.load_private_key(credentials["private_key"], "RS256").public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    verified = jws.verify(fields.get("assertion", ""), public_key)
    if verified is None:
        return _oauth_error("invalid_grant", "Invalid JWT Signature.")
    claims = verified[1]
    now = time.time()
    if claims.get("iss") != credentials["client_email"]:
        return _oauth_error("invalid_grant", "Invalid email or User ID")
    if not str(claims.get("aud", "")).endswith(AUTH_PATH) or SCOPE not in str(claims.get("scope", "")).split():
        return _oauth_error("invalid_scope", "Invalid audience or scope.")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > MAX_ASSERTION_LIFETIME_S:
        return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes).")
    if iat > now + MAX_CLOCK_SKEW_S or exp < now - MAX_CLOCK_SKEW_S:
        return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.")
    await delay(state, PROVIDER)
    access_token, ttl = state.issue_token(PROVIDER)
    return json_response({"access_token": access_token, "expires_in": ttl, "token_type": "Bearer"})


async def messages_send(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    scheme, _, access_token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or state.check_token(PROVIDER, access_token) != "valid":
        return _fcm_error(
            401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token."
        )
    project = request.match_info["project"]
    if project != state.credentials[PROVIDER]["project_id"]:
        return _fcm_error(403, "PERMISSION_DENIED", f"Permission 'cloudmessaging.messages.create' denied on resource '{project}'")
    try:
        body: Any = json.loads(await request.read())
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("token"), str) or not message["token"]:
        return _fcm_error(
            400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT"
        )
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        violation = {"field": "message.data", "description": "Invalid value at 'message.data': values must be strings."}
        return _fcm_error(400, "INVALID_ARGUMENT", violation["description"], violations=[violation])
    device_token = message["token"]

    def accept() -> web.Response:
        name = f"projects/{project}/messages/0:{int(time.time() * 1000)}%{secrets.token_hex(8)}"
        state.record(Record(PROVIDER, device_token, None, body, provider_message_id=name))
        return json_response({"name": name})

    def fail(kind: str) -> web.Response:
        if kind == "throttle":
            return _fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", "QUOTA_EXCEEDED")
        if kind == "invalid_number":
            return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        return _fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")

    return await simulate(request, PROVIDER, accept=accept, fail=fail)
