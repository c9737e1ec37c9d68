from __future__ import annotations

from django.urls import path

from apps.dispatch import api

urlpatterns = [
    path("messages", api.MessageListCreateView.as_view(), name="messages"),
    path("messages/<str:message_id>", api.MessageDetailView.as_view(), name="message-detail"),
    path("messages/<str:message_id>/cancel", api.MessageCancelView.as_view(), name="message-cancel"),
    path("stats", api.StatsView.as_view(), name="stats"),
    path("recipients/<str:user_id>/inbox", api.InboxView.as_view(), name="inbox"),
    path("recipients/<str:user_id>/inbox/read-all", api.InboxReadAllView.as_view(), name="inbox-read-all"),
    path("recipients/<str:user_id>/inbox/<str:message_id>/read", api.InboxReadView.as_view(), name="inbox-read"),
]
