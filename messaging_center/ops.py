"""Liveness, readiness and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET

from messaging_center import metrics


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        connection.close_if_unusable_or_obsolete()
        return False


def _broker_ok() -> bool:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    down = [name for name, ok in checks.items() if not ok]
    body = {"status": "ok" if not down else "unavailable", "checks": {k: "ok" if v else "down" for k, v in checks.items()}}
    if down:
        body |= {"code": "unavailable", "detail": f"Not ready: {', '.join(down)} down."}
        return JsonResponse(body, status=503)
    return JsonResponse(body)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


# Served by the API and by the receipts listener alike.
urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]
