from __future__ import annotations

import datetime as dt
import ipaddress
import json
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils import timezone

from messaging_center import availability, metrics
from messaging_center.errors import DATABASE_DOWN, database_unavailable, json_error


class BodySizeLimitMiddleware:
    """Answers 413 from the declared Content-Length, before a byte of an oversized body is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            return json_error("validation_error", "Content-Length is not a number.", 400)
        if length > settings.MAX_REQUEST_BODY_BYTES:
            limit_mib = settings.MAX_REQUEST_BODY_BYTES // (1024 * 1024)
            response = json_error("payload_too_large", f"The request body is over {limit_mib} MiB.", 413)
            response["Connection"] = "close"
            return response
        return self.get_response(request)


def refusal_code(response: HttpResponse) -> str | None:
    """The error body's `code` of a refused API request (4xx, or 503 unavailable); None for any other answer.
    DRF's responses carry their body as data; the others (413, a database outage) are small JSON bodies."""
    if not (400 <= response.status_code < 500 or response.status_code == 503):
        return None
    data = getattr(response, "data", None)
    if data is None and isinstance(response, JsonResponse):
        data = json.loads(response.content)
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else "other"


class RequestMetricsMiddleware:
    """Request latency per route and API refusals by code, for /metrics; API answers per minute for the
    availability metric."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)  # set by Django when it reached a view
        try:
            route = (match or resolve(request.path_info)).route or "other"
        except Resolver404:
            route = "unmatched"
        metrics.REQUEST_LATENCY.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - started)
        if request.path_info.startswith("/api/"):
            availability.TALLY.count(response.status_code)
            if (code := refusal_code(response)) is not None:
                metrics.API_REFUSALS.labels(code).inc()
        return response


class AdminLoginGuardMiddleware:
    """At most LOGIN_CHECKS_PER_PROCESS sign-ins per web process are checked at once (their password
    hashing is slow on purpose): a flood of them is answered 429 at once instead of holding the web
    threads that serve the API. Guessing is stopped by django-axes (settings, AXES_*)."""

    LOGIN_CHECKS_PER_PROCESS = 2

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.checks = threading.BoundedSemaphore(self.LOGIN_CHECKS_PER_PROCESS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path_info != settings.ADMIN_LOGIN_PATH:
            return self.get_response(request)
        # Never waiting: a sign-in queued here would hold one of the web threads that serve the API.
        if not self.checks.acquire(blocking=False):
            response = HttpResponse(
                "Too many sign-ins are being checked right now; try again in a few seconds.",
                status=429,
                content_type="text/plain",
            )
            response["Retry-After"] = "5"
            return response
        try:
            return self.get_response(request)
        finally:
            self.checks.release()


def client_address(request: HttpRequest) -> str | None:
    """The sign-in's client address for axes: REMOTE_ADDR, or the address the proxy in front reports
    (settings.ADMIN_CLIENT_ADDRESS_HEADER, e.g. HTTP_X_REAL_IP; only when that proxy sets it itself)."""
    header = settings.ADMIN_CLIENT_ADDRESS_HEADER
    # The rightmost entry is the one the trusted proxy added (clients can put anything before it).
    forwarded = (request.META.get(header, "") if header else "").split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return request.META.get("REMOTE_ADDR")


class ApiUtcMiddleware:
    """The API answers in UTC (messaging_center/times.py): DRF renders its timestamps in the current
    time zone, which is UTC for /api/ and settings.TIME_ZONE elsewhere (the admin)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith("/api/"):
            return self.get_response(request)
        with timezone.override(dt.UTC):
            return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Views outside DRF (providers' status reports) answer a database outage as the API does: 503
    `unavailable` with Retry-After (a provider retries its push), not a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path_info.startswith("/api/") or not isinstance(exception, DATABASE_DOWN):
            return None
        body, headers = database_unavailable(exception)
        response = JsonResponse(body, status=503)
        for name, value in headers.items():
            response[name] = value
        return response
