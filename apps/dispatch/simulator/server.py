"""The simulator's HTTP server (aiohttp): control endpoints under `/_sim/`, provider APIs beside them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from aiohttp import web

from apps.dispatch.simulator.state import BehaviorError, SimulatorState, parse_behavior_changes

STATE_KEY = web.AppKey("state", SimulatorState)


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


def build_app(provider_names: list[str] | None = None) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[STATE_KEY] = SimulatorState(provider_names or [])
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
    args = parser.parse_args(argv)
    web.run_app(build_app(), host=args.host, port=args.port, access_log=None, print=None)
