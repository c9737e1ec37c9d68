"""What the delivery engine calls when messages reach a status business systems hear about.

Called after the engine's conditional UPDATE, in the worker: it must never break a finish, so
errors are logged (unmatched receipts are re-matched by a beat job anyway)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)


def messages_reached(message_ids: Iterable[uuid.UUID], status: str) -> None:
    """`sent`, `failed` or `expired`: owe a status callback; `sent`: apply receipts that came early."""
    from apps.receipts import callbacks, services

    message_ids = list(message_ids)
    if not message_ids:
        return
    try:
        callbacks.callbacks_enqueue(message_ids=message_ids, status=status)
        if status == "sent":
            services.receipts_match_for_messages(message_ids=message_ids)
    except Exception:
        logger.exception("status hook for %d message(s) reaching %s failed", len(message_ids), status)


def messages_sent(message_ids: Sequence[uuid.UUID], owed_callbacks: Sequence[tuple[uuid.UUID, uuid.UUID, str]]) -> None:
    """The worker's `sent` finish, which found the callbacks owed (message, account, code) in its
    own statement: those, and receipts that came before the finish."""
    from apps.receipts import callbacks, services

    try:
        callbacks.callbacks_create(owed=owed_callbacks, status="sent")
        services.receipts_match_for_messages(message_ids=message_ids)
    except Exception:
        logger.exception("status hook for %d sent message(s) failed", len(message_ids))
