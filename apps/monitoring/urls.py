from __future__ import annotations

from django.contrib import admin
from django.urls import path

from apps.monitoring import views

# Mounted under /admin/ before the admin's own URLs (messaging_center/urls.py).
urlpatterns = [
    path("", admin.site.admin_view(views.dashboard_page), name="dashboard"),
    path("data.json", admin.site.admin_view(views.dashboard_json), name="dashboard-data"),
]
