from __future__ import annotations

from django.urls import path

from apps.receipts import views

urlpatterns = [
    path("receipts/<str:provider>", views.receipt_push, name="receipt-push"),
    path("receipts/t/<str:token>/<str:provider>", views.receipt_push, name="receipt-push-token"),
]
