"""The web process's WSGI application: the API (/api/v1/…) through a short middleware chain
(settings.API_MIDDLEWARE), everything else — admin, docs, health — through the full one."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from messaging_center.request_body import read_chunked_bodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_center.settings")
_full = get_wsgi_application()

API_PREFIX = "/api/v1/"


def _api_handler() -> Any:
    """A second Django handler whose middleware chain is API_MIDDLEWARE. Django builds a handler's
    chain from settings.MIDDLEWARE once, when the handler is made; that is swapped for the moment."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    full = settings.MIDDLEWARE
    settings.MIDDLEWARE = settings.API_MIDDLEWARE
    try:
        return WSGIHandler()
    finally:
        settings.MIDDLEWARE = full


_api = _api_handler()


def _route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    handler = _api if environ.get("PATH_INFO", "").startswith(API_PREFIX) else _full
    return handler(environ, start_response)


application = read_chunked_bodies(_route, limit=settings.MAX_REQUEST_BODY_BYTES)
