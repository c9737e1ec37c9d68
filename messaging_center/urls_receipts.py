"""The receipts listener's URLs (RECEIPTS_PORT): providers' status reports and health only. The
public API, the admin and the docs are not reachable on the port the providers call."""

from __future__ import annotations

from django.urls import include, path

from apps.receipts.urls import push_urlpatterns
from messaging_center import ops

urlpatterns = [
    *ops.urlpatterns,
    path("api/v1/", include(push_urlpatterns)),
]

handler400 = "messaging_center.errors.handler400"
handler403 = "messaging_center.errors.handler403"
handler404 = "messaging_center.errors.handler404"
handler500 = "messaging_center.errors.handler500"
