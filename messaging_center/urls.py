from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from messaging_center import ops

api_v1 = [
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
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]

handler400 = "messaging_center.errors.handler400"
handler403 = "messaging_center.errors.handler403"
handler404 = "messaging_center.errors.handler404"
handler500 = "messaging_center.errors.handler500"
