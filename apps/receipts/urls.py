from __future__ import annotations

from django.urls import path

from apps.receipts import views

# Providers' status reports: also all that the receipts listener serves (messaging_center/urls_receipts.py).
push_urlpatterns = [
    path("receipts/<str:provider>", views.receipt_push, name="receipt-push"),
    path("receipts/t/<str:token>/<str:provider>", views.receipt_push, name="receipt-push-token"),
]

urlpatterns = push_urlpatterns
