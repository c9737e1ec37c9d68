"""Idempotency-Key: the first response is kept 24 h and returned byte for byte; another body → 409."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from apps.accounts.models import Account
from apps.dispatch.models import IdempotencyRecord
from messaging_center import ids
from messaging_center.db import bound_cursor
from messaging_center.errors import Conflict

IDEMPOTENCY_TTL = dt.timedelta(hours=24)


@dataclass(frozen=True)
class SendResponse:
    status_code: int
    body: bytes


# --- idempotency ----------------------------------------------------------------------------------


def body_fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def replay_or_conflict(record: IdempotencyRecord, fingerprint: str) -> SendResponse:
    if record.body_hash != fingerprint:
        raise Conflict("This Idempotency-Key was used with a different body.", code="idempotency_conflict")
    return SendResponse(record.status_code or 202, bytes(record.response_body or b""))


def claim_idempotency_key(*, account: Account, key: str, fingerprint: str, now: dt.datetime) -> uuid.UUID | SendResponse:
    """Inserts the key inside the request's transaction. A concurrent request with the same key
    waits on the unique index until the first commits, then replays its response."""
    record_id = ids.uuid7()
    with bound_cursor() as cursor:
        for _ in range(2):
            cursor.execute(
                "INSERT INTO dispatch_idempotencyrecord (id, account_id, key, body_hash, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account_id, key) DO NOTHING RETURNING id",
                [record_id, account.id, key, fingerprint, now],
            )
            if cursor.fetchone():
                return record_id
            existing = IdempotencyRecord.objects.filter(account=account, key=key).first()
            if existing is None:  # purged since the insert found it: insert again
                continue
            if existing.created_at >= now - IDEMPOTENCY_TTL:
                return replay_or_conflict(existing, fingerprint)
            existing.delete()
    raise Conflict("This Idempotency-Key is being used concurrently; retry.", code="idempotency_conflict")
