"""Operators see receipts, status callbacks with their attempts, verifications and failovers."""

from __future__ import annotations

import pytest

from apps.accounts.services import account_set_callback
from apps.receipts.callbacks import callbacks_enqueue
from apps.receipts.models import CallbackAttempt, StatusCallback

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
