from __future__ import annotations

from django.urls import path

from apps.templates import api

urlpatterns = [
    path("templates", api.TemplateListView.as_view(), name="templates"),
    path("templates/<str:code>", api.TemplateDetailView.as_view(), name="template"),
    path("templates/<str:code>/preview", api.TemplatePreviewView.as_view(), name="template-preview"),
]
