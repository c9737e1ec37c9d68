from __future__ import annotations

from django.urls import path

from apps.verifications import api

urlpatterns = [
    path("verifications", api.VerificationSendView.as_view(), name="verifications"),
    path("verifications/check", api.VerificationCheckView.as_view(), name="verification-check"),
]
