"""`/admin/dashboard/` for staff: the page, and the JSON it fetches. Both behind the admin's own
sign-in (`admin_site.admin_view`: anyone not signed in as staff is sent to the admin's login)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.monitoring.dashboard import dashboard_data
from apps.monitoring.series import DEFAULT_RANGE, RANGES
from messaging_center.errors import json_error


@require_GET
def dashboard_page(request: HttpRequest) -> HttpResponse:
    context = admin.site.each_context(request) | {"title": "Dashboard", "ranges": list(RANGES), "default_range": DEFAULT_RANGE}
    return TemplateResponse(request, "monitoring/dashboard.html", context)


@require_GET
def dashboard_json(request: HttpRequest) -> HttpResponse:
    range_name = request.GET.get("range") or DEFAULT_RANGE
    if range_name not in RANGES:
        return json_error("validation_error", f"range must be one of {', '.join(RANGES)}.", 400)
    response = JsonResponse(dashboard_data(range_name=range_name, now=timezone.now()))
    response["Cache-Control"] = "no-store"
    return response
