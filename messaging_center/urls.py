from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from messaging_center import ops
from messaging_center.api_root import ApiRootView

api_v1: list[URLPattern | URLResolver] = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("", include("apps.accounts.urls")),
    path("", include("apps.dispatch.urls")),
    path("", include("apps.templates.urls")),
    path("", include("apps.receipts.urls")),
    path("", include("apps.verifications.urls")),
]

urlpatterns = [
    *ops.urlpatterns,
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI and ReDoc from the drf-spectacular-sidecar package's static files (no CDN); the split
    # view serves its start-up script as a file too (no inline script).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html"), name="redoc"),
    # The staff dashboard, before the admin's own URLs (its catch-all would answer 404 for it).
    path("admin/dashboard/", include("apps.monitoring.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "messaging_center.errors.handler400"
handler403 = "messaging_center.errors.handler403"
handler404 = "messaging_center.errors.handler404"
handler500 = "messaging_center.errors.handler500"
