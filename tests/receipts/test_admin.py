"""Operators see receipts, status callbacks with their attempts, verifications and failovers."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.services import account_set_callback
from apps.receipts.callbacks import callbacks_enqueue
from apps.receipts.models import CallbackAttempt, ProviderReceipt, StatusCallback

pytestmark = pytest.mark.django_db


def test_admin_pages(operator, api, make_message) -> None:
    account_set_callback(account=api.account, callback_url="https://hooks.example.com/mc")
    message = make_message()
    callbacks_enqueue(message_ids=[message.id], status="sent")
    callback = StatusCallback.objects.get()
    CallbackAttempt.objects.create(
        callback=callback,
        message_id=callback.message_id,
        at=callback.created_at,
        url="https://hooks.example.com/mc",
        error="HTTP 500",
    )
    for page in ("receipts/providerreceipt", "receipts/statuscallback", "receipts/callbackattempt", "receipts/failover"):
        assert operator.get(f"/admin/{page}/").status_code == 200, page
    assert operator.get("/admin/verifications/verification/").status_code == 200
    detail = operator.get(f"/admin/receipts/statuscallback/{callback.id}/change/")
    assert detail.status_code == 200 and b"HTTP 500" in detail.content


def test_receipt_pages_show_the_number_masked_only(operator, make_message) -> None:
    message = make_message()
    now = timezone.now()
    receipt = ProviderReceipt.objects.create(
        provider=message.provider,
        kind="aliyun",
        provider_message_id=message.provider_message_id,
        to=message.address,
        status="delivered",
        reported_at=now,
        received_at=now,
        message=message,
        matched_at=now,
    )
    masked = message.address[:6] + "****" + message.address[-4:]
    for url in ("/admin/receipts/providerreceipt/", f"/admin/receipts/providerreceipt/{receipt.pk}/change/"):
        page = operator.get(url).content.decode()
        assert message.address not in page, url
    assert masked in operator.get(f"/admin/receipts/providerreceipt/{receipt.pk}/change/").content.decode()
