"""APNs as the simulator serves it: `POST /3/device/<token>` over HTTP/2, with ES256 provider tokens.

aiohttp cannot serve HTTP/2, and APNs speaks nothing else, so this is a small HTTP/2 server on the
`h2` protocol library, on its own port (`--apns-port`) in the simulator's event loop. It speaks
cleartext HTTP/2 with prior knowledge (no TLS, no HTTP/1.1 upgrade): the APNs adapter's client does
the same when its endpoint is `http://`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import ProtocolError, StreamClosedError

from apps.dispatch.providers import jws
from apps.dispatch.providers.apns import MAX_PAYLOAD_BYTES
from devstack.simulator.common import APNS_PORT_KEY, HOST_KEY, STATE_KEY, simulate_with
from devstack.simulator.state import Record, SimulatorState

PROVIDER = "apns"
DEVICE_PATH = re.compile(r"^/3/device/(?P<token>[^/?]+)$")
DEVICE_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")
PROVIDER_TOKEN_MAX_AGE_S = 3600

Answer = tuple[int, dict[str, str], bytes]

logger = logging.getLogger(__name__)


def _reason(status: int, reason: str, apns_id: str | None = None, **extra: Any) -> Answer:
    headers = {"content-type": "application/json"} | ({"apns-id": apns_id} if apns_id else {})
    return status, headers, json.dumps({"reason": reason, **extra}).encode()


def _authenticate(state: SimulatorState, authorization: str) -> Answer | None:
    credentials = state.credentials[PROVIDER]
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _reason(403, "MissingProviderToken")
    public_key = jws.load_private_key(credentials["private_key"], "ES256").public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    verified = jws.verify(token, public_key)
    if verified is None or verified[0].get("kid") != credentials["key_id"] or verified[1].get("iss") != credentials["team_id"]:
        return _reason(403, "InvalidProviderToken")
    issued_at = verified[1].get("iat")
    if not isinstance(issued_at, int) or time.time() - issued_at > PROVIDER_TOKEN_MAX_AGE_S:
        return _reason(403, "ExpiredProviderToken")
    return None


async def handle(state: SimulatorState, headers: dict[str, str], body: bytes) -> Answer:
    match = DEVICE_PATH.match(headers.get(":path", ""))
    if match is None:
        return _reason(404, "BadPath")
    if headers.get(":method") != "POST":
        return _reason(405, "MethodNotAllowed")
    denied = _authenticate(state, headers.get("authorization", ""))
    if denied is not None:
        return denied
    apns_id = headers.get("apns-id") or str(uuid.uuid4())
    try:
        uuid.UUID(apns_id)
    except ValueError:
        return _reason(400, "BadMessageId")
    if not headers.get("apns-topic"):
        return _reason(400, "MissingTopic", apns_id)
    if headers.get("apns-priority", "10") not in ("1", "5", "10"):
        return _reason(400, "BadPriority", apns_id)
    if not headers.get("apns-expiration", "0").isdigit():
        return _reason(400, "BadExpirationDate", apns_id)
    device_token = match["token"]
    if not DEVICE_TOKEN.match(device_token):
        return _reason(400, "BadDeviceToken", apns_id)
    if len(body) > MAX_PAYLOAD_BYTES:
        return _reason(413, "PayloadTooLarge", apns_id)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        return _reason(400, "PayloadEmpty", apns_id)
    request = {"headers": {k: v for k, v in headers.items() if k.startswith("apns-")}, "payload": payload}

    def accept() -> Answer:
        state.record(Record(PROVIDER, device_token, None, request, provider_message_id=apns_id))
        return 200, {"apns-id": apns_id}, b""

    def fail(kind: str) -> Answer:
        if kind == "throttle":
            return _reason(429, "TooManyRequests", apns_id)
        if kind == "invalid_number":
            return _reason(410, "Unregistered", apns_id, timestamp=int(time.time() * 1000))
        return _reason(500, "InternalServerError", apns_id)

    return await simulate_with(state, PROVIDER, accept=accept, fail=fail)


class Http2Protocol(asyncio.Protocol):
    """One HTTP/2 connection: streams are answered concurrently, each by `handle`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.transport.write(self.conn.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(event, DataReceived):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded) and event.stream_id in self.streams:
                headers, body = self.streams.pop(event.stream_id)
                task = asyncio.create_task(self._respond(event.stream_id, headers, bytes(body)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                self.transport.close()
        self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self.tasks:
            task.cancel()

    async def _respond(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        status, response_headers, payload = await handle(self.state, headers, body)
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self.conn.send_headers(stream_id, [(":status", str(status)), *response_headers.items()], end_stream=not payload)
            if payload:
                self.conn.send_data(stream_id, payload, end_stream=True)
        except (StreamClosedError, ProtocolError):
            return  # the client reset the stream (gave up waiting) meanwhile
        self.transport.write(self.conn.data_to_send())


async def apns_server(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the HTTP/2 server runs while the app runs."""
    try:
        server = await asyncio.get_running_loop().create_server(
            lambda: Http2Protocol(app[STATE_KEY]), app[HOST_KEY], app[APNS_PORT_KEY]
        )
    except OSError as error:
        # The HTTP providers stay usable; only APNs is missing (the log says why).
        logger.error("the APNs server cannot listen on %s:%s: %s", app[HOST_KEY], app[APNS_PORT_KEY], error)
        yield
        return
    yield
    # Not wait_closed(): clients keep their HTTP/2 connections open; the process is ending anyway.
    server.close()
