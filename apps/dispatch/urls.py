from __future__ import annotations

from django.urls import path

from apps.dispatch.api import inbox, messages, stats

urlpatterns = [
    path("messages", messages.MessageListCreateView.as_view(), name="messages"),
    path("messages/<str:message_id>", messages.MessageDetailView.as_view(), name="message-detail"),
    path("messages/<str:message_id>/cancel", messages.MessageCancelView.as_view(), name="message-cancel"),
    path("stats", stats.StatsView.as_view(), name="stats"),
    path("recipients/<str:user_id>/inbox", inbox.InboxView.as_view(), name="inbox"),
    path("recipients/<str:user_id>/inbox/read-all", inbox.InboxReadAllView.as_view(), name="inbox-read-all"),
    path("recipients/<str:user_id>/inbox/<str:message_id>/read", inbox.InboxReadView.as_view(), name="inbox-read"),
]
