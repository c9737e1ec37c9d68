"""What other apps want to hear when messages reach a status: a typed registry that dispatch owns
and that apps above it fill in when they start (apps.receipts: status callbacks to business systems,
receipts that came before the message was `sent`). Dispatch calls it after its conditional UPDATE,
in the worker, so a hook must never break a finish: errors are logged, not raised."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

logger = logging.getLogger(__name__)

# (message id, account id, code) of a status callback an account is owed.
OwedCallback = tuple[uuid.UUID, uuid.UUID, str]


class ReachedHook(Protocol):
    def __call__(self, message_ids: Sequence[uuid.UUID], status: str) -> None: ...


class SentHook(Protocol):
    def __call__(self, message_ids: Sequence[uuid.UUID], owed_callbacks: Sequence[OwedCallback]) -> None: ...


_reached: list[ReachedHook] = []
_sent: list[SentHook] = []


def on_reached(hook: ReachedHook) -> None:
    """`hook(message_ids, status)` after messages reach `sent`, `delivered`, `failed` or `expired`
    (except the worker's `sent` finish, which calls the sent hooks)."""
    if hook not in _reached:
        _reached.append(hook)


def on_sent(hook: SentHook) -> None:
    """`hook(message_ids, owed_callbacks)` after the worker's `sent` finish, which found the
    callbacks owed in its own statement."""
    if hook not in _sent:
        _sent.append(hook)


def _call(hooks: Sequence[Callable[..., None]], what: str, count: int, *args: object) -> None:
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            logger.exception("status hook %s for %d message(s) %s failed", getattr(hook, "__qualname__", hook), count, what)


def messages_reached(message_ids: Sequence[uuid.UUID] | set[uuid.UUID], status: str) -> None:
    ids = list(message_ids)
    if ids:
        _call(_reached, f"reaching {status}", len(ids), ids, status)


def messages_sent(message_ids: Sequence[uuid.UUID], owed_callbacks: Sequence[OwedCallback]) -> None:
    if message_ids:
        _call(_sent, "sent", len(message_ids), message_ids, owed_callbacks)
