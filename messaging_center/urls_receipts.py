"""The receipts listener's URLs (RECEIPTS_PORT): providers' status reports and health only. The
public API, the admin and the docs are not reachable on the port the providers call."""

from __future__ import annotations

from django.urls import path

from apps.receipts import views
from messaging_center import ops

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
    path("api/v1/receipts/<str:provider>", views.receipt_push, name="receipt-push"),
    path("api/v1/receipts/t/<str:token>/<str:provider>", views.receipt_push, name="receipt-push-token"),
]

handler400 = "messaging_center.errors.handler400"
handler403 = "messaging_center.errors.handler403"
handler404 = "messaging_center.errors.handler404"
handler500 = "messaging_center.errors.handler500"
