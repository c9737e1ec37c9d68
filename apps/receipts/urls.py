from __future__ import annotations

from django.urls import path

from apps.receipts import api, views

# Providers' status reports: also all that the receipts listener serves (messaging_center/urls_receipts.py).
push_urlpatterns = [
    path("receipts/<str:provider>", views.receipt_push, name="receipt-push"),
    path("receipts/t/<str:token>/<str:provider>", views.receipt_push, name="receipt-push-token"),
]

urlpatterns = [
    *push_urlpatterns,
    path("stats", api.StatsView.as_view(), name="stats"),
    path("verifications", api.VerificationSendView.as_view(), name="verifications"),
    path("verifications/check", api.VerificationCheckView.as_view(), name="verification-check"),
]
