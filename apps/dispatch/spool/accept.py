"""The send path through a database outage: this process's view of the outage, and a send written
to the spool instead of PostgreSQL."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from redis.exceptions import RedisError

from apps.accounts.models import Account
from apps.dispatch.accept.entries import schedule_entries, seal_entries
from apps.dispatch.accept.group import SendResult, apply_limits
from apps.dispatch.accept.idempotency import SendResponse
from apps.dispatch.accept.prepare import PreparedSend, prepare_send
from apps.dispatch.accept.rows import inline_rows, response_body
from apps.dispatch.accept.send import message_send as message_send_to_database
from apps.dispatch.models import Status
from apps.dispatch.spool import store
from messaging_center import metrics
from messaging_center.broker import broker_client, push_task
from messaging_center.errors import DATABASE_DOWN, Unavailable

logger = logging.getLogger(__name__)

DELIVER_SPOOLED_TASK = "dispatch.deliver_spooled"  # apps.dispatch.tasks.deliver_spooled
SPOOLED_CATEGORIES = frozenset({"verification", "transactional"})
# While the database is down, a connection is tried again at most this often per process.
PROBE_SECONDS = 1.0

_down_until = 0.0  # monotonic; 0: this process has not seen the database down since it last reached it


def note_database_down() -> None:
    global _down_until
    _down_until = time.monotonic() + PROBE_SECONDS


def database_down() -> bool:
    """Whether sends go to the spool: this process found the database unreachable and a new
    connection still fails. Costs nothing while the database answers; during an outage one refused
    connection a second. A connection *refused* stored nothing, so a message spooled after it cannot
    also be in the database; the request that found the outage mid-transaction answered 503."""
    global _down_until
    if not _down_until:
        return False
    if time.monotonic() < _down_until:
        return True
    try:
        connection.close()  # one from before the outage is broken
        connection.ensure_connection()
    except DATABASE_DOWN:
        note_database_down()
        return True
    _down_until = 0.0
    return False


def message_send(
    *,
    account: Account,
    data: Any,
    idempotency_key: str | None = None,
    secret_params: frozenset[str] = frozenset(),
    throttle: bool = False,
    verification: dict[str, Any] | None = None,
) -> SendResponse:
    """`accept.send.message_send`, or into the spool while the database is down. `verification`:
    the code's row (apps.verifications), stored with the message when it is spooled."""
    if settings.SPOOL_MAX_MESSAGES and not connection.in_atomic_block and database_down():
        return _spool_send(account, data, idempotency_key, secret_params, throttle, verification)
    try:
        return message_send_to_database(
            account=account, data=data, idempotency_key=idempotency_key, secret_params=secret_params, throttle=throttle
        )
    except Unavailable as error:
        if isinstance(error.__cause__, DATABASE_DOWN):
            note_database_down()
        raise
    except DATABASE_DOWN:
        note_database_down()
        raise


def _refuse(why: str) -> Unavailable:
    return Unavailable(f"The database is unavailable and {why}; nothing was sent. Retry shortly.", headers={"Retry-After": "5"})


def _spool_send(
    account: Account,
    data: Any,
    idempotency_key: str | None,
    secret_params: frozenset[str],
    throttle: bool,
    verification: dict[str, Any] | None,
) -> SendResponse:
    send = prepare_send(account=account, data=data, idempotency_key=idempotency_key, secret_params=secret_params)
    template = send.template
    if template.category not in SPOOLED_CATEGORIES:
        raise _refuse(f"{template.category} messages wait for it")
    if idempotency_key:
        # Its earlier use may be in the database, where it cannot be looked up now.
        raise _refuse("a send with an Idempotency-Key waits for it (retry with the same key)")
    try:
        if not store.has_room(len(send.entries)):
            raise _refuse("the spool is full")
        send.throttle = throttle
        results: list[SendResult | None] = [None]
        apply_limits([send], results)
        if isinstance(results[0], Exception):
            raise results[0]
        schedule_entries(send.entries, template, send.request, send.now)
        seal_entries(send.entries, template, send.secret_params)
        deliver = _deliverable(send)
        messages = [(row["id"], row["status"], _data(send, row, deliver, verification)) for row in inline_rows(send)]
        store.put(messages)
        queued = [id_hex for id_hex, status, _ in messages if status == Status.QUEUED and deliver]
        if queued:
            with broker_client().pipeline(transaction=False) as pipe:
                push_task(pipe, DELIVER_SPOOLED_TASK, f"mc.{send.lane}", [queued])
                pipe.execute()
    except store.SpoolFull:
        raise _refuse("the spool is full") from None
    except (RedisError, OSError) as error:
        raise _refuse(f"the spool cannot be written ({error})") from error
    metrics.MESSAGES_SPOOLED.labels(template.channel).inc(len(messages))
    return SendResponse(202, response_body(send.entries, send.message_ids, send.batch_id))


def _deliverable(send: PreparedSend) -> bool:
    """Verification codes go out from the spool. Transactional messages wait in it for the database:
    whether their recipients opted out is there (the replay checks it, then they are delivered as any
    other); an inbox message is stored by being delivered."""
    return send.template.category == "verification" and send.template.channel != "inbox"


def _data(send: PreparedSend, row: dict[str, Any], deliver: bool, verification: dict[str, Any] | None) -> dict[str, Any]:
    template = send.template
    snapshot = {f.attname: f.value_from_object(template) for f in template._meta.concrete_fields}
    return {
        "row": row,
        "template": DjangoJSONEncoder().encode(snapshot),
        "verification": verification,
        "hold": not deliver,
    }
