"""What receipts does when dispatch moves messages (registered in apps.receipts.apps with
apps.dispatch.status_hooks): owe status callbacks, and apply receipts that came before `sent`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from apps.dispatch.status_hooks import OwedCallback
from apps.receipts import callbacks, matching


def messages_reached(message_ids: Sequence[uuid.UUID], status: str) -> None:
    """`sent`, `failed` or `expired`: owe a status callback; `sent`: apply receipts that came early."""
    callbacks.callbacks_enqueue(message_ids=message_ids, status=status)
    if status == "sent":
        matching.receipts_match_for_messages(message_ids=message_ids)


def messages_sent(message_ids: Sequence[uuid.UUID], owed_callbacks: Sequence[OwedCallback]) -> None:
    """The worker's `sent` finish, which found the callbacks owed (message, account, code) in its
    own statement: those, and receipts that came before the finish."""
    callbacks.callbacks_create(owed=owed_callbacks, status="sent")
    matching.receipts_match_for_messages(message_ids=message_ids)
