"""`POST /api/v1/messages`: accept a send request (validate, decide every entry, write, publish)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection

from apps.accounts.models import Account
from apps.dispatch import outbox
from apps.dispatch.accept.group import AGAIN, GROUP_MAX_ENTRIES, SENDS, take_request_token, write_group
from apps.dispatch.accept.idempotency import SendResponse
from apps.dispatch.accept.prepare import PreparedSend, prepare_send
from apps.dispatch.models import Status
from messaging_center import metrics
from messaging_center.errors import ServiceError

logger = logging.getLogger(__name__)


def _publish(send: PreparedSend) -> None:
    """Publishes the tasks of the group this request's thread wrote: now, or alone inside a caller's
    transaction when that commits. Whatever happens here, the sends stand; the relay publishes what
    this did not."""
    rows, send.to_publish = send.to_publish, []
    if rows:
        try:
            outbox.publish_on_commit(rows)
        except Exception:
            logger.exception("publish after commit failed; the outbox relay will publish what it missed")


def message_send(
    *,
    account: Account,
    data: Any,
    idempotency_key: str | None = None,
    secret_params: frozenset[str] = frozenset(),
    throttle: bool = False,
) -> SendResponse:
    """`throttle`: the request takes a token of the account's request rate (the send API, whose view
    leaves that to this): with its limits, in the same script call — a request over the rate is
    refused (429 rate_limited) before anything is counted, and its Idempotency-Key is freed. An
    invalid request takes its token on its own, so that garbage is throttled too."""
    try:
        send = prepare_send(account=account, data=data, idempotency_key=idempotency_key, secret_params=secret_params)
    except ServiceError:
        if throttle:
            take_request_token(account)
        raise
    send.throttle = throttle
    # Inside a caller's transaction the write must be part of it, not of another thread's commit.
    alone = len(send.entries) > GROUP_MAX_ENTRIES or connection.in_atomic_block
    result = AGAIN
    while result is AGAIN:
        result = write_group([send])[0] if alone else SENDS.submit(send)
        _publish(send)
    if isinstance(result, Exception):
        raise result
    assert isinstance(result, SendResponse)  # neither an error nor AGAIN (the loop above)
    accepted = sum(1 for e in send.entries if e.status in (Status.QUEUED, Status.SCHEDULED)) if send.written else 0
    if accepted:
        metrics.MESSAGES_ACCEPTED.labels(send.template.channel, send.lane).inc(accepted)
    return result
