"""Status callbacks to business systems: `{"type": "message.status", …}` POSTed to the account's
callback URL, signed `X-MC-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

Each owed notification is a `StatusCallback` row (unique per message and status), so a duplicated
hook or task never notifies twice. Workers on the `mc.receipts` lane POST them; a non-2xx answer,
a timeout or a refused address is retried with backoff for 24 h: short waits as countdown tasks,
longer ones left in the database for the beat job. Redirects are never followed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import Account
from apps.accounts.services import account_callback_secret
from apps.receipts.models import CallbackAttempt, StatusCallback
from messaging_center import celery_app, ids, metrics, outbound
from messaging_center.backoff import backoff_seconds
from messaging_center.db import bound_cursor, json_rows
from messaging_center.times import api_time

logger = logging.getLogger(__name__)

CALLBACK_STATUSES = ("sent", "delivered", "undelivered", "failed", "expired")
GIVE_UP_AFTER = dt.timedelta(hours=24)
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 3600
CLAIM_LEASE = dt.timedelta(seconds=60)
CHUNK_SIZE = 100
DELIVER_TASK = "receipts.deliver_callbacks"  # apps.receipts.tasks.deliver_callbacks, published by name
POST_THREADS = 8
# `total` bounds a trickling endpoint too (the read timeout is per read).
TIMEOUT = urllib3.Timeout(connect=2.0, read=5.0, total=10.0)


def signature_header(*, secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def callbacks_enqueue(*, message_ids: Sequence[uuid.UUID], status: str) -> list[uuid.UUID]:
    """One StatusCallback per message whose account has a callback URL; tasks go out in chunks
    after commit."""
    if not message_ids or status not in CALLBACK_STATUSES:
        return []
    with bound_cursor() as cursor:
        cursor.execute(
            """
            SELECT m.id, m.account_id, m.code FROM dispatch_message m JOIN accounts_account a ON a.id = m.account_id
            WHERE m.id = ANY(%s) AND a.callback_url <> ''
            """,
            [list(message_ids)],
        )
        owed = cursor.fetchall()
    return callbacks_create(owed=owed, status=status)


def callbacks_create(*, owed: Sequence[tuple[uuid.UUID, uuid.UUID, str]], status: str) -> list[uuid.UUID]:
    """(message id, account id, code) of messages whose account has a callback URL → their callbacks."""
    if not owed:
        return []
    now = timezone.now()
    at = api_time(now)
    bodies = [
        json.dumps(
            {"type": "message.status", "message_id": ids.encode("msg", mid), "status": status, "code": code, "at": at},
            separators=(",", ":"),
        )
        for mid, _, code in owed
    ]
    with bound_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO receipts_statuscallback (id, account_id, message_id, status, body, state, attempts, next_attempt_at,
                                                 created_at, last_error)
            SELECT c.id, c.account_id, c.message_id, %s, c.body, 'pending', 0, now(), now(), ''
            FROM json_to_recordset(%s::json) AS c(id uuid, account_id uuid, message_id uuid, body text)
            ON CONFLICT DO NOTHING
            RETURNING id
            """,
            [
                status,
                json_rows(
                    {"id": callback_id, "account_id": account_id, "message_id": mid, "body": body}
                    for callback_id, (mid, account_id, _), body in zip(ids.uuid7_many(len(owed)), owed, bodies, strict=True)
                ),
            ],
        )
        created = [row[0] for row in cursor.fetchall()]
    transaction.on_commit(lambda: publish(created))
    return created


def publish(callback_ids: Sequence[uuid.UUID], *, countdown: float = 0) -> None:
    """Tasks of up to CHUNK_SIZE callbacks; a failed publish is left to the beat job (rows are due)."""
    countdown = min(countdown, settings.MAX_RETRY_COUNTDOWN_SECONDS)
    try:
        for start in range(0, len(callback_ids), CHUNK_SIZE):
            chunk = [str(c) for c in callback_ids[start : start + CHUNK_SIZE]]
            celery_app.send_task(DELIVER_TASK, args=[chunk], queue="mc.receipts", countdown=countdown or None, retry=False)
    except Exception as error:  # the broker being down: the beat job finds the due rows
        logger.warning("publishing %d status callback(s) failed: %s", len(callback_ids), error)


@dataclass
class Outcome:
    callback_id: uuid.UUID
    url: str
    status_code: int | None = None
    error: str = ""
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(callback_id: uuid.UUID, url: str, body: bytes, secret: str) -> Outcome:
    """One POST through the guarded road out (messaging_center.outbound): a refused URL is an
    attempt that failed before any connection, retried like any other until the account mends it."""
    outcome = Outcome(callback_id, url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "MessagingCenter-Callbacks/1",
        "X-MC-Signature": signature_header(secret=secret, body=body, timestamp=int(time.time())),
    }
    started = time.monotonic()
    try:
        response = outbound.post(url, body=body, headers=headers, timeout=TIMEOUT, allow_private=settings.CALLBACK_ALLOW_PRIVATE)
        outcome.status_code = response.status
        if 300 <= response.status < 400:
            outcome.error = f"redirect to {response.headers.get('Location', '?')} not followed"
        elif not outcome.ok:
            outcome.error = f"HTTP {response.status}"
    except outbound.Refused as refused:
        outcome.error = f"refused: {refused}"
    except urllib3.exceptions.TimeoutError as error:
        outcome.error = f"timeout: {error}"
    except urllib3.exceptions.HTTPError as error:
        outcome.error = f"{type(error).__name__}: {error}"
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    return outcome


def callbacks_deliver(*, callback_ids: Sequence[uuid.UUID]) -> list[Outcome]:
    """Claims due callbacks (a conditional UPDATE: a duplicate task finds nothing), POSTs them
    concurrently, records each attempt, then finishes or reschedules each."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE receipts_statuscallback SET attempts = attempts + 1, next_attempt_at = now() + %s
            WHERE id = ANY(%s) AND state = 'pending' AND next_attempt_at <= now()
            RETURNING id, account_id, body, attempts, created_at, message_id
            """,
            [cast(Any, CLAIM_LEASE), list(callback_ids)],  # a timedelta: psycopg binds it, django-stubs leave it out
        )
        claimed = cursor.fetchall()
    if not claimed:
        return []
    accounts = {a.id: a for a in Account.objects.filter(id__in={row[1] for row in claimed})}
    canceled: list[uuid.UUID] = []
    jobs = []
    for callback_id, account_id, body, *_ in claimed:
        account = accounts.get(account_id)
        secret = account_callback_secret(account=account) if account else None
        if account is None or not account.callback_url or not secret or not account.is_active:
            canceled.append(callback_id)  # the URL was removed or the account disabled: stop
            continue
        jobs.append((callback_id, account.callback_url, body.encode(), secret))
    with ThreadPoolExecutor(max_workers=min(POST_THREADS, max(1, len(jobs)))) as pool:
        outcomes = list(pool.map(lambda job: _post(*job), jobs))
    _finish(claimed, outcomes, canceled)
    return outcomes


def _finish(claimed: list[tuple[Any, ...]], outcomes: list[Outcome], canceled: list[uuid.UUID]) -> None:
    now = timezone.now()
    by_id = {row[0]: row for row in claimed}
    CallbackAttempt.objects.bulk_create(
        [
            CallbackAttempt(
                callback_id=o.callback_id,
                message_id=by_id[o.callback_id][5],
                at=now,
                url=o.url[:500],
                status_code=o.status_code,
                error=o.error,
                duration_ms=o.duration_ms,
            )
            for o in outcomes
        ]
    )
    if canceled:
        StatusCallback.objects.filter(id__in=canceled, state="pending").update(
            state=StatusCallback.State.CANCELED, last_error="callback URL removed or account disabled"
        )
    soon: dict[int, list[uuid.UUID]] = {}
    for outcome in outcomes:
        metrics.CALLBACK_ATTEMPTS.labels("ok" if outcome.ok else "error").inc()
        pending = StatusCallback.objects.filter(id=outcome.callback_id, state="pending")
        if outcome.ok:
            pending.update(state=StatusCallback.State.DELIVERED, last_error="")
            continue
        _, _, _, attempts, created_at, _ = by_id[outcome.callback_id]
        # 5 s, 10 s, 20 s … capped at an hour: about 30 tries over the 24 h; whole seconds, so that
        # the callbacks of one run that wait alike share a task.
        wait = int(backoff_seconds(attempts, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS, jitter=False))
        if now + dt.timedelta(seconds=wait) > created_at + GIVE_UP_AFTER:
            pending.update(state=StatusCallback.State.FAILED, last_error=outcome.error)
            continue
        pending.update(next_attempt_at=now + dt.timedelta(seconds=wait), last_error=outcome.error)
        if wait <= settings.MAX_RETRY_COUNTDOWN_SECONDS:
            soon.setdefault(wait, []).append(outcome.callback_id)
    for wait, callback_ids in soon.items():
        publish(callback_ids, countdown=wait)


def callbacks_due_query(batch: int) -> QuerySet[StatusCallback, uuid.UUID]:
    """Through `callback_due` (next_attempt_at) WHERE state = 'pending'."""
    return (
        StatusCallback.objects.filter(state="pending", next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:batch]
    )


def callbacks_publish_due(*, batch: int = 1000) -> int:
    """Beat job: callbacks whose (long) wait is over, or whose task the broker lost."""
    due = list(callbacks_due_query(batch))
    publish(due)
    return len(due)
