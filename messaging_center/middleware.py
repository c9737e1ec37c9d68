from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from messaging_center import metrics
from messaging_center.errors import json_error


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


class RequestMetricsMiddleware:
    """Request latency per route for /metrics."""

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
        return response
