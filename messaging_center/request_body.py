"""Request bodies sent with `Transfer-Encoding: chunked`: the server hands them over dechunked with
no Content-Length, and Django reads a body only as far as Content-Length says (an empty one). They
are read here instead, up to the 5 MiB limit, so that the API sees them as any other body; a larger
one is refused with 413 before more is read."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _too_large(start_response: Callable[..., Any], limit: int) -> list[bytes]:
    body = json.dumps({"code": "payload_too_large", "detail": f"The request body is over {limit // (1024 * 1024)} MiB."})
    start_response(
        "413 Payload Too Large",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")],
    )
    return [body.encode()]


def read_chunked_bodies(app: WsgiApp, *, limit: int) -> WsgiApp:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _too_large(start_response, limit)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return application
