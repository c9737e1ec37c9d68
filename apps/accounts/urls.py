from __future__ import annotations

from django.urls import path

from apps.accounts import api

urlpatterns = [
    path("account", api.AccountView.as_view(), name="account"),
]
