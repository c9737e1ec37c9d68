"""The simulator's HTTP server (aiohttp): control endpoints under `/_sim/`, provider APIs beside them.

One process serves every provider on its real path: Aliyun's RPC API, Tencent's API 3.0 and
Volcengine's OpenAPI share `/` (Tencent's requests carry an `X-TC-Action` header, Volcengine's an
`Authorization: HMAC-SHA256 …` header or one of its API versions in the query, Aliyun's an `Action`
parameter and neither of the others), Twilio's Messages resource lives under `/2010-04-01/`.
WeChat and WeCom both live under `/cgi-bin/` on different real hosts, but on distinct paths
(`token` vs `gettoken`, `message/template/send` vs `message/send`), so both are served here as they
are. FCM's `/v1/projects/…` and its OAuth `/token` (the simulated service account's token_uri),
JPush's `/v3/push`. Point each adapter's `endpoint` setting at the simulator's base URL. APNs
(HTTP/2 only) and SMTP listen on ports of their own (`--apns-port`, `--smtp-port`; default the HTTP
port + 1 and + 2) in the same event loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devstack.simulator import aliyun, apns, fcm, jpush, smtp, tencent, twilio, volcengine, wechat, wecom
from devstack.simulator.common import APNS_PORT_KEY, HOST_KEY, SMTP_PORT_KEY, STATE_KEY
from devstack.simulator.receipts import receipt_pump
from devstack.simulator.state import (
    DEFAULT_CREDENTIALS,
    TOKEN_TTL_S,
    BehaviorError,
    SimulatorState,
    credentials_from_env,
    parse_behavior_changes,
)

logger = logging.getLogger(__name__)
PROVIDERS = list(DEFAULT_CREDENTIALS)


def _error(status: int, detail: str) -> web.Response:
    return web.json_response({"code": "validation_error", "detail": detail}, status=status)


async def providers(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].providers)


async def messages(request: web.Request) -> web.Response:
    return web.json_response({"results": request.app[STATE_KEY].messages(request.query.get("to"))})


async def clear_messages(request: web.Request) -> web.Response:
    request.app[STATE_KEY].clear()
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"status": "reset"})


async def behavior(request: web.Request) -> web.Response:
    try:
        body: Any = await request.json()
    except json.JSONDecodeError:
        return _error(400, "body must be JSON")
    state = request.app[STATE_KEY]
    try:
        provider, changes = parse_behavior_changes(body)
    except BehaviorError as error:
        return _error(400, str(error))
    if provider != "*" and provider not in state.providers:
        return _error(404, f"unknown provider {provider!r}; known: {', '.join(state.providers)}")
    state.apply_behavior(provider, changes)
    targets = state.providers if provider == "*" else [provider]
    return web.json_response({name: state.behavior(name).__dict__ for name in targets})


async def tokens(request: web.Request) -> web.Response:
    """How many access tokens each provider issued (the tests count refreshes)."""
    return web.json_response({"requests": dict(request.app[STATE_KEY].token_requests)})


async def expire_tokens(request: web.Request) -> web.Response:
    """`{"provider": "wechat"}`: every token issued so far is expired from now on."""
    try:
        body: Any = await request.json()
    except json.JSONDecodeError:
        return _error(400, "body must be JSON")
    provider = body.get("provider") if isinstance(body, dict) else None
    if provider not in TOKEN_TTL_S:
        return _error(400, f"provider must be one of {', '.join(TOKEN_TTL_S)}")
    return web.json_response({"expired": request.app[STATE_KEY].expire_tokens(provider)})


async def root(request: web.Request) -> web.Response:
    if "X-TC-Action" in request.headers:
        return await tencent.handle(request)
    if volcengine.claims(request):
        return await volcengine.handle(request)
    return await aliyun.handle(request)


@web.middleware
async def never_crash(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A bug or a request nobody foresaw answers 500 JSON and leaves the simulator running."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("simulator failed on %s %s", request.method, request.path)
        return web.json_response({"code": "simulator_error", "detail": "unexpected error, see the simulator log"}, status=500)


def build_app(
    provider_names: list[str] | None = None,
    *,
    credentials: dict[str, dict[str, str]] | None = None,
    receipt_base_url: str | None = None,
    host: str = "127.0.0.1",
    apns_port: int = 0,
    smtp_port: int = 0,
) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[never_crash])
    app[STATE_KEY] = SimulatorState(provider_names or PROVIDERS, credentials, receipt_base_url)
    app[HOST_KEY], app[APNS_PORT_KEY], app[SMTP_PORT_KEY] = host, apns_port, smtp_port
    app.cleanup_ctx.append(receipt_pump)
    if apns_port:
        app.cleanup_ctx.append(apns.apns_server)
    if smtp_port:
        app.cleanup_ctx.append(smtp.smtp_server)
    app.router.add_route("POST", "/", root)
    app.router.add_route("GET", "/", root)
    app.router.add_post(twilio.PATH, twilio.create_message)
    app.router.add_get(twilio.PATH, twilio.list_messages)
    app.router.add_get(wechat.AUTH_PATH, wechat.token)
    app.router.add_post(wechat.SEND_PATH, wechat.template_send)
    app.router.add_get(wecom.AUTH_PATH, wecom.gettoken)
    app.router.add_post(wecom.SEND_PATH, wecom.message_send)
    app.router.add_post(fcm.AUTH_PATH, fcm.token)
    app.router.add_post(fcm.SEND_PATH, fcm.messages_send)
    app.router.add_post(jpush.PATH, jpush.push)
    app.router.add_get("/_sim/tokens", tokens)
    app.router.add_post("/_sim/tokens/expire", expire_tokens)
    app.router.add_get("/_sim/providers", providers)
    app.router.add_get("/_sim/messages", messages)
    app.router.add_delete("/_sim/messages", clear_messages)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/_sim/behavior", behavior)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Provider simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--apns-port", type=int, help="APNs over HTTP/2 (default: --port + 1; 0: off)")
    parser.add_argument("--smtp-port", type=int, help="SMTP (default: --port + 2; 0: off)")
    parser.add_argument(
        "--receipt-base-url",
        default=os.environ.get("SIM_RECEIPT_BASE_URL") or None,
        help="status reports go to <this><provider>, e.g. http://127.0.0.1:8000/api/v1/receipts/ (env SIM_RECEIPT_BASE_URL)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = build_app(
        credentials=credentials_from_env(dict(os.environ)),
        receipt_base_url=args.receipt_base_url,
        host=args.host,
        apns_port=args.port + 1 if args.apns_port is None else args.apns_port,
        smtp_port=args.port + 2 if args.smtp_port is None else args.smtp_port,
    )
    # A request held by an injected timeout must not delay shutdown.
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, shutdown_timeout=1)
