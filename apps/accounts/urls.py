from __future__ import annotations

from django.urls import path

from apps.accounts import api

urlpatterns = [
    path("account", api.AccountView.as_view(), name="account"),
    path("recipients/<str:user_id>", api.RecipientView.as_view(), name="recipient"),
    path("recipients/<str:user_id>/preferences", api.PreferencesView.as_view(), name="recipient-preferences"),
]
