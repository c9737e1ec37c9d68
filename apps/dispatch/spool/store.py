"""The spool's Redis keys and the atomic steps on them (Lua: one round trip, no interleaving).

`mc:spool:m:<id hex>` is a hash per message: `data` (JSON, written once: the row as the send path
writes it — `accept/rows.inline_rows` —, the template as the worker needs it, the verification code's
row, whether it waits for the database), and the mutable `status`, `attempts`, `lease`, `due`,
`tried` (providers, newest first), `provider`, `provider_message_id`, `code`, `detail`, `sent_at`.
`mc:spool:e:<id hex>` lists its events (JSON). `mc:spool:ids` orders every spooled id by acceptance
(its size is the bound). A message moves only inside a script that checks its status first, as the
database's conditional UPDATEs do: `claim` (queued, retry_wait due, or sending whose lease ran out →
sending), `finish` (only the attempt it claimed), `take` (anything not under a live lease →
replaying, which nothing claims again)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from redis.exceptions import ResponseError

from messaging_center.broker import redis_client

logger = logging.getLogger(__name__)

IDS_KEY = "mc:spool:ids"
# Providers' reports pushed while the database was down (apps.receipts.intake), JSON rows, oldest first.
RECEIPTS_KEY = "mc:spool:receipts"
# Set by each replay for one failover window: codes sent during the outage had their reports refused
# or spooled, so their silence says nothing yet (apps.receipts.failover.failover_silent waits).
REPLAYED_KEY = "mc:spool:replayed"
MESSAGE_PREFIX = "mc:spool:m:"
EVENTS_PREFIX = "mc:spool:e:"
# The appendfsync the spool found (and switched to `always`), put back once the spool is empty.
FSYNC_WAS_KEY = "mc:spool:fsync-was"
FSYNC_CHECK_SECONDS = 1.0

_PUT = """
local n = (#ARGV - 1) / 3
if redis.call('ZCARD', KEYS[1]) + n > tonumber(ARGV[1]) then return 0 end
for i = 0, n - 1 do
  local hex, status, data = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  redis.call('HSET', 'mc:spool:m:' .. hex, 'data', data, 'status', status, 'attempts', 0)
  redis.call('ZADD', KEYS[1], 0, hex)  -- one score: ordered by the id, a UUIDv7 (acceptance order)
end
return 1
"""

# ARGV: now, lease seconds, ids. Each claimed: {id, attempt, data, tried}; each held by a live lease
# or a retry not yet due: {id, -1, when (epoch s)}.
_CLAIM = """
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local k = 'mc:spool:m:' .. ARGV[i]
  local s = redis.call('HMGET', k, 'status', 'due', 'lease', 'attempts', 'tried', 'data')
  local status = s[1]
  if status == 'queued' or (status == 'retry_wait' and tonumber(s[2]) <= now)
     or (status == 'sending' and tonumber(s[3]) < now) then
    local attempt = tonumber(s[4]) + 1
    redis.call('HSET', k, 'status', 'sending', 'attempts', attempt, 'lease', tostring(now + lease))
    table.insert(out, {ARGV[i], attempt, s[6], s[5] or ''})
  elseif status == 'retry_wait' then
    table.insert(out, {ARGV[i], -1, s[2]})
  elseif status == 'sending' then
    table.insert(out, {ARGV[i], -1, s[3]})
  end
end
return out
"""

# ARGV: id, attempt, event JSON, then field/value pairs. Only the attempt that claimed it finishes it.
_FINISH = """
local k = 'mc:spool:m:' .. ARGV[1]
local s = redis.call('HMGET', k, 'status', 'attempts')
if s[1] ~= 'sending' or tonumber(s[2]) ~= tonumber(ARGV[2]) then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('RPUSH', 'mc:spool:e:' .. ARGV[1], ARGV[3])
return 1
"""

# ARGV: now, ids. Each taken: {id, flat hash, events}; a message under a live lease is left alone.
_TAKE = """
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local k = 'mc:spool:m:' .. ARGV[i]
  local s = redis.call('HMGET', k, 'status', 'lease')
  if s[1] and not (s[1] == 'sending' and tonumber(s[2]) >= now) then
    if s[1] ~= 'replaying' then redis.call('HSET', k, 'status', 'replaying', 'was', s[1]) end
    table.insert(out, {ARGV[i], redis.call('HGETALL', k), redis.call('LRANGE', 'mc:spool:e:' .. ARGV[i], 0, -1)})
  end
end
return out
"""


@dataclass(frozen=True)
class Spooled:
    """One message as the spool holds it."""

    id_hex: str
    data: dict[str, Any]
    fields: dict[str, str]
    events: list[dict[str, Any]]

    @property
    def status(self) -> str:
        """What the message is (the status it had when a replay took it)."""
        status = self.fields.get("status", "")
        return self.fields.get("was", status) if status == "replaying" else status

    def row(self) -> dict[str, Any]:
        """Its `dispatch_message` row (JSON values, as `accept/rows.inline_rows` makes them), moved on
        by what happened to it in the spool."""
        fields = self.fields
        row: dict[str, Any] = dict(self.data["row"])
        row |= {
            "id": str(uuid.UUID(self.id_hex)),
            "status": self.status,
            "attempts": int(fields.get("attempts", 0)),
            "provider": fields.get("provider", ""),
            "provider_message_id": fields.get("provider_message_id", ""),
            "sent_at": fields.get("sent_at") or None,
        }
        if "code" in fields:
            row |= {"code": fields["code"], "detail": fields["detail"]}
        if self.status == "sending":
            row["lease_until"] = dt.datetime.fromtimestamp(float(fields["lease"]), dt.UTC).isoformat()
        return row


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SpoolFull(Exception):
    pass


_fsync_checked_at = 0.0


def _ensure_fsync_always() -> None:
    """Every spooled write must be on disk before its 202: Redis 6.2 (the embedded one) has no
    WAITAOF, so the instance is switched to `appendfsync always` while the spool holds messages and
    put back by the replay once it is empty (measured: a write 104 → 328 µs; pipelined 122k → 52k
    writes/s on this box). A Redis that refuses CONFIG (managed services) must be run so by its
    operator (README, Database outage)."""
    global _fsync_checked_at
    if time.monotonic() - _fsync_checked_at < FSYNC_CHECK_SECONDS:
        return
    client = redis_client()
    try:
        current = str(client.config_get("appendfsync").get("appendfsync", ""))
        if current != "always":
            client.set(FSYNC_WAS_KEY, current, nx=True)
            client.config_set("appendfsync", "always")
            if client.config_get("appendonly").get("appendonly") != "yes":
                client.config_set("appendonly", "yes")
    except ResponseError as error:
        logger.warning("spool: cannot check Redis's appendfsync (%s); its operator must set `appendfsync always`", error)
    _fsync_checked_at = time.monotonic()


def restore_fsync() -> None:
    """The spool is empty: Redis's appendfsync back to what it was before the outage."""
    client = redis_client()
    was = client.get(FSYNC_WAS_KEY)
    if was is None:
        return
    try:
        client.config_set("appendfsync", _text(was))
    except ResponseError as error:
        logger.warning("spool: cannot put Redis's appendfsync back (%s)", error)
    client.delete(FSYNC_WAS_KEY)


def size() -> int:
    """Messages and reports in the spool."""
    with redis_client().pipeline(transaction=False) as pipe:
        pipe.zcard(IDS_KEY)
        pipe.llen(RECEIPTS_KEY)
        return sum(int(n) for n in pipe.execute())


def has_room(count: int) -> bool:
    return int(redis_client().zcard(IDS_KEY)) + count <= settings.SPOOL_MAX_MESSAGES


def put_receipts(rows: Sequence[dict[str, Any]]) -> None:
    """Reports pushed during the outage (their rows as apps.receipts stores them); SpoolFull past the bound."""
    _ensure_fsync_always()
    client = redis_client()
    if client.llen(RECEIPTS_KEY) + len(rows) > settings.SPOOL_MAX_MESSAGES:
        raise SpoolFull
    client.rpush(RECEIPTS_KEY, *(DjangoJSONEncoder().encode(row) for row in rows))


def receipts(count: int) -> list[dict[str, Any]]:
    return [json.loads(row) for row in redis_client().lrange(RECEIPTS_KEY, 0, count - 1)]


def drop_receipts(count: int) -> None:
    """The oldest `count` reports are stored: out of the spool."""
    redis_client().ltrim(RECEIPTS_KEY, count, -1)


def mark_replayed(seconds: int) -> None:
    redis_client().set(REPLAYED_KEY, 1, ex=seconds)


def replayed_recently() -> bool:
    return bool(redis_client().exists(REPLAYED_KEY))


def put(messages: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """(id hex, status, data) of one request's messages, all or none; SpoolFull past the bound."""
    _ensure_fsync_always()
    args: list[str | int] = [settings.SPOOL_MAX_MESSAGES]
    for id_hex, status, data in messages:
        args += [id_hex, status, json.dumps(data, ensure_ascii=False, separators=(",", ":"))]
    if not redis_client().eval(_PUT, 1, IDS_KEY, *args):
        raise SpoolFull


def claim(id_hexes: Sequence[str], *, lease_seconds: float) -> tuple[list[tuple[str, int, dict[str, Any], list[str]]], float]:
    """Claims the claimable of these messages: (id, attempt, data, providers tried) each, and the
    earliest time one held by a lease or a retry not yet due may be claimed (0 when none)."""
    rows = redis_client().eval(_CLAIM, 0, time.time(), lease_seconds, *id_hexes)
    claimed, later = [], 0.0
    for row in rows:
        if int(row[1]) < 0:
            when = float(row[2])
            later = min(later, when) if later else when
        else:
            tried = row[3].decode()
            claimed.append((row[0].decode(), int(row[1]), json.loads(row[2]), tried.split(",") if tried else []))
    return claimed, later


def finish(id_hex: str, attempt: int, event: dict[str, Any], fields: dict[str, str | int | float]) -> bool:
    pairs = [str(value) for item in fields.items() for value in item]
    return bool(redis_client().eval(_FINISH, 0, id_hex, attempt, json.dumps(event), *pairs))


def oldest(count: int) -> list[str]:
    return [_text(value) for value in redis_client().zrange(IDS_KEY, 0, count - 1)]


def _spooled(id_hex: str, flat: Sequence[bytes], events: Sequence[bytes]) -> Spooled:
    fields = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
    data = json.loads(fields.pop("data"))
    return Spooled(id_hex, data, fields, [json.loads(e) for e in events])


def take(id_hexes: Sequence[str]) -> list[Spooled]:
    """The messages for the replay, each now `replaying` (no worker claims it again)."""
    if not id_hexes:
        return []
    rows = redis_client().eval(_TAKE, 0, time.time(), *id_hexes)
    return [_spooled(row[0].decode(), row[1], row[2]) for row in rows]


def get(id_hex: str) -> Spooled | None:
    client = redis_client()
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(MESSAGE_PREFIX + id_hex)
        pipe.lrange(EVENTS_PREFIX + id_hex, 0, -1)
        found, events = pipe.execute()
    if not found:
        return None
    flat = [item for pair in found.items() for item in pair]
    return _spooled(id_hex, flat, events)


def remove(id_hexes: Sequence[str]) -> None:
    """Replayed (committed to PostgreSQL): out of the spool."""
    if not id_hexes:
        return
    client = redis_client()
    with client.pipeline(transaction=False) as pipe:
        pipe.zrem(IDS_KEY, *id_hexes)
        pipe.delete(*(MESSAGE_PREFIX + h for h in id_hexes), *(EVENTS_PREFIX + h for h in id_hexes))
        pipe.execute()
