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


# What still works with only the broker down (README, Degradation): the database is the source of truth.
BROKER_DOWN_DETAIL = (
    "Redis (broker and limits) down: sends are still accepted and wait in the outbox until it is back; "
    "delivery, polling and callbacks wait; sends that need frequency limits or dedup (verification codes, "
    "marketing, templates with limits) answer 503 unavailable; request rates and daily quotas are not enforced."
)

# What still works with only the database down (README, Database outage): the spool in Redis.
DATABASE_DOWN_DETAIL = (
    "PostgreSQL down: verification and transactional sends are accepted into the spool (codes are delivered "
    "from it, transactional sends wait for the database); everything else answers 503 unavailable."
)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """503 only when this process cannot accept: the database down without the spool (apps/dispatch/spool,
    in Redis) to take sends, or both down. The broker down leaves it ready (a load balancer taking every
    web process out for a Redis outage would refuse what the outbox keeps), and so does the database
    down while the spool takes verification and transactional sends."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    states = {name: "ok" if ok else "down" for name, ok in checks.items()}
    if not checks["database"] and checks["broker"] and settings.SPOOL_MAX_MESSAGES:
        return JsonResponse({"status": "degraded", "detail": DATABASE_DOWN_DETAIL, "checks": states, "accepting": True})
    if not checks["database"]:
        down = " and ".join(name for name, ok in checks.items() if not ok)
        body = {"status": "unavailable", "code": "unavailable", "detail": f"Not ready: {down} down."}
        return JsonResponse(body | {"checks": states, "accepting": False}, status=503)
    if not checks["broker"]:
        return JsonResponse({"status": "degraded", "detail": BROKER_DOWN_DETAIL, "checks": states, "accepting": True})
    return JsonResponse({"status": "ok", "checks": states, "accepting": True})


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


# Served by the API and by the receipts listener alike.
urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]
