"""`POST /api/v1/receipts/{provider}`: providers' own status reports. No API key: the provider's
signature (Twilio, WeChat) or the secret URL token (`?token=` or `/receipts/t/<token>/<provider>`,
for Aliyun, Tencent and Volcengine, whose pushes are unsigned) proves the sender. Unknown messages
answer 200 so that the provider stops retrying; the report is kept and matched later."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.dispatch.providers.base import ReceiptFormatError
from apps.receipts import intake
from messaging_center.errors import json_error


@csrf_exempt
@require_POST
def receipt_push(request: HttpRequest, provider: str, token: str | None = None) -> HttpResponse:
    # The URL the provider called, as it signed it: behind proxies only the configured base is reliable.
    url = settings.RECEIPTS_BASE_URL + request.get_full_path()
    headers = dict(request.headers)
    body = request.body
    source = intake.receipt_source_authenticate(
        provider_ref=provider,
        token=token or request.GET.get("token"),
        method=request.method or "POST",
        url=url,
        headers=headers,
        body=body,
    )
    if source is None:
        return json_error("invalid_signature", "The report's signature or token does not match any provider.", 401)
    try:
        receipts = intake.receipts_parse(source=source, url=url, headers=headers, body=body)
    except (ReceiptFormatError, UnicodeDecodeError) as error:
        return json_error("validation_error", f"Not a {source.provider.kind} status report: {error}"[:500], 400)
    intake.receipts_store_pushed(provider=source.provider, receipts=receipts)
    status, content_type, body = source.adapter.receipt_ack
    return HttpResponse(body, status=status, content_type=content_type)
