"""The message state machine: the moves a message's status may make, declared once (`MOVES`), and
every statement that moves it, built here from named pieces (psycopg.sql) so that no status list is
written twice. Raw SQL, not the ORM: each move is one conditional UPDATE over a whole chunk of ids,
with its events and owed callbacks in the same statement where it can (docs/performance.md, Delivery).

Callers run these with `messaging_center.db.bound_cursor` (server-side binding; prepared after a few
runs). A conditional UPDATE that finds the message elsewhere moves nothing: a duplicated task, a
redelivery after a crash or a sweeper re-enqueue never sends twice (DESIGN.md, reliability rules)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import LiteralString

from psycopg import sql

from apps.dispatch.models import DueKind, Status

S = Status
# status → the statuses it may move to. Set at accept and never moved: suppressed, rejected.
MOVES: dict[str, frozenset[str]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELED, S.EXPIRED}),
    S.QUEUED: frozenset({S.SENDING, S.CANCELED, S.EXPIRED}),
    # sending → sending: claimed again after its worker died mid-send (its lease ran out);
    # sending → delivered: the in-site inbox, where storing is delivering.
    S.SENDING: frozenset({S.SENDING, S.SENT, S.RETRY_WAIT, S.FAILED, S.EXPIRED, S.DELIVERED}),
    # retry_wait/expired → delivered/undelivered: a report proves that an attempt whose outcome was
    # unknown (a timeout) reached the provider after all.
    S.RETRY_WAIT: frozenset({S.SENDING, S.EXPIRED, S.DELIVERED, S.UNDELIVERED}),
    S.SENT: frozenset({S.DELIVERED, S.UNDELIVERED}),
    S.EXPIRED: frozenset({S.DELIVERED, S.UNDELIVERED}),
    # A carrier may report a failed try, then success; never backwards.
    S.UNDELIVERED: frozenset({S.DELIVERED}),
}


def moving_to(target: str) -> tuple[str, ...]:
    """The statuses a message may move to `target` from."""
    return tuple(sorted(status for status, targets in MOVES.items() if target in targets))


def _in(statuses: Iterable[str], column: LiteralString = "status") -> sql.Composable:
    return sql.SQL("{} IN ({})").format(sql.SQL(column), sql.SQL(", ").join(sql.Literal(str(s)) for s in sorted(statuses)))


def _is(status: str, column: LiteralString = "status") -> sql.Composable:
    return sql.SQL("{} = {}").format(sql.SQL(column), sql.Literal(str(status)))


def _build(template: LiteralString, **parts: sql.Composable | str) -> str:
    """The statement's text, once, at import (psycopg prepares statements by their text)."""
    return sql.SQL(template).format(**{k: sql.SQL(v) if isinstance(v, str) else v for k, v in parts.items()}).as_string()


# --- claiming (apps.dispatch.delivery.claims) ------------------------------------------------------

# Waiting, or `sending` with its lease run out (the worker died mid-send), and still in time.
CLAIMABLE = _build(
    "({waiting} OR ({sending} AND lease_until < now())) AND expires_at > now()",
    waiting=_in(set(moving_to(S.SENDING)) - {S.SENDING}),
    sending=_is(S.SENDING),
)

# Messages of a chunk whose TTL ran out before a provider took them → `expired`, keeping the last error.
# A `sending` one only once its lease ran out (its worker died): a send still under way finishes itself.
_EXPIRE = _build(
    """
    UPDATE dispatch_message SET status = {expired}, code = 'ttl_expired', lease_until = NULL,
           detail = 'The TTL passed before a provider accepted the message'
                    || CASE WHEN code <> '' THEN ' (last error: ' || code || ')' ELSE '' END || '.'
    WHERE id = ANY(%(ids)s) AND {expirable} AND expires_at <= now()
    RETURNING id, detail
""",
    expired=sql.Literal(S.EXPIRED),
    expirable=sql.SQL("({waiting} OR ({sending} AND lease_until < now()))").format(
        waiting=_in(set(moving_to(S.EXPIRED)) - {S.SENDING}), sending=_is(S.SENDING)
    ),
)
# The expired rows as they were (the statement's one snapshot does not see its own UPDATE), and the
# lease of the attempt that was under way in those that were `sending`: the expiry ends it.
_EXPIRED_ROWS = "FROM expired e JOIN dispatch_message d ON d.id = e.id"
_UNDER_WAY = _build("CASE WHEN {sending} THEN d.lease_until END", sending=_is(S.SENDING, "d.status"))

# Expires what has run out of time and reads what is claimable (disjoint: `now()` is one moment in a
# statement), each as it will be once claimed: named as apps.dispatch.delivery.claims.Claimed's fields,
# beside `expired`. An expired row carries only its id, attempts, the expiry's detail (as `content`)
# and the lease of the attempt it ended (as `lost_lease`).
READ_CLAIMABLE = _build(
    """
    WITH expired AS ({expire})
    SELECT FALSE AS expired, id, channel, address, attempts + 1 AS attempt, template_id, content, title, params,
           provider AS previous_provider, priority, category, expires_at,
           needs_reconcile OR ({sending} AND provider <> '') AS needs_reconcile, user_id, account_id,
           provider_message_id AS previous_reference, segment, CASE WHEN {sending} THEN lease_until END AS lost_lease
    FROM dispatch_message WHERE id = ANY(%(ids)s) AND {claimable}
    UNION ALL
    SELECT TRUE, e.id, NULL, NULL, d.attempts, NULL, e.detail, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, {under_way}
    {expired_rows}
""",
    expire=_EXPIRE,
    sending=_is(S.SENDING),
    claimable=CLAIMABLE,
    under_way=_UNDER_WAY,
    expired_rows=_EXPIRED_ROWS,
)

# Expiry alone: (id, detail, attempts, the lease of the attempt under way or NULL).
EXPIRE = _build(
    "WITH expired AS ({expire}) SELECT e.id, e.detail, d.attempts, {under_way} {expired_rows}",
    expire=_EXPIRE,
    under_way=_UNDER_WAY,
    expired_rows=_EXPIRED_ROWS,
)

# → sending, on the attempt count read (a message claimed elsewhere in between is left alone),
# recording the provider chosen and the batch reference where a crash mid-send could be reconciled.
CLAIM = _build(
    """
    WITH claimed AS (
        UPDATE dispatch_message AS m SET status = {sending_status}, attempts = m.attempts + 1, lease_until = now() + %(lease)s,
               -- re-claiming a `sending` row: its worker died mid-send, the provider may have it
               needs_reconcile = m.needs_reconcile OR ({was_sending} AND m.provider <> ''),
               provider = CASE WHEN c.provider <> '' THEN c.provider ELSE m.provider END,
               provider_message_id = CASE WHEN c.ref <> '' THEN c.ref ELSE m.provider_message_id END
        FROM json_to_recordset(%(claims)s::json) AS c(id uuid, seen int, provider text, ref text)
        WHERE m.id = c.id AND m.id = ANY(%(ids)s) AND m.attempts = c.seen AND {claimable}
        RETURNING m.id, now()
    )
    SELECT id, now FROM claimed
""",
    sending_status=sql.Literal(S.SENDING),
    was_sending=_is(S.SENDING, "m.status"),
    claimable=CLAIMABLE,
)

# --- finishing an attempt (apps.dispatch.delivery.finishing, claims, reconcile) -------------------

# Every finish is conditional on the claimed attempt: a message whose lease ran out and was claimed
# again elsewhere is never finished twice.
_OF_ATTEMPT = _build(
    "m.id = c.id AND m.id = ANY(%(ids)s) AND {sending} AND m.attempts = c.attempt", sending=_is(S.SENDING, "m.status")
)

# The in-site inbox: storing the message for the recipient is delivering it. Rows: (id, attempt).
INBOX_DELIVERED = _build(
    """
    UPDATE dispatch_message AS m SET status = {delivered}, provider = 'inbox', sent_at = now(), delivered_at = now(),
           lease_until = NULL
    FROM json_to_recordset(%(rows)s::json) AS c(id uuid, attempt int)
    WHERE {of_attempt}
    RETURNING m.id
""",
    delivered=sql.Literal(S.DELIVERED),
    of_attempt=_OF_ATTEMPT,
)

# Before sending messages claimed without a choice: the provider and batch reference of each.
RECORD_PROVIDER = _build(
    """
    UPDATE dispatch_message AS m SET provider = c.provider,
           provider_message_id = CASE WHEN c.reference <> '' THEN c.reference ELSE m.provider_message_id END
    FROM json_to_recordset(%(rows)s::json) AS c(id uuid, attempt int, provider text, reference text)
    WHERE {of_attempt}
    RETURNING m.id
""",
    of_attempt=_OF_ATTEMPT,
)

# → sent (with its cost), its `sent` events and the status callbacks owed, in one statement. Rows 's': the message and
# the seconds from its acceptance (or the time it was scheduled for) to now, as the rollups' queue_ms;
# 'c': (message, account) of a callback owed.
SENT = _build(
    """
    WITH sent AS (
        UPDATE dispatch_message AS m SET status = {sent}, provider = c.provider, provider_message_id = c.pid,
               sent_at = now(), code = '', detail = '', lease_until = NULL, needs_reconcile = FALSE,
               -- the provider's price for the segment times SMS segments (another channel's message counts as one)
               cost = c.price * coalesce(m.segments, 1)
        FROM json_to_recordset(%(rows)s::json)
             AS c(id uuid, attempt int, provider text, pid text, code text, detail text, event_id uuid, started timestamptz,
                  reason text, price bigint)
        WHERE {of_attempt}
        RETURNING m.id, m.account_id, c.provider, c.code, c.detail, c.attempt, c.event_id, c.started, c.reason,
                  extract(epoch FROM now() - coalesce(m.scheduled_at, m.created_at)) AS waited
    ), events AS (
        INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt, started_at, reason)
        SELECT event_id, id, {sent}, now(), code, detail, provider, attempt, started, reason FROM sent
    )
    SELECT 's', id, NULL, waited FROM sent
    UNION ALL SELECT 'c', s.id, s.account_id, NULL FROM sent s JOIN accounts_account a ON a.id = s.account_id
              WHERE a.callback_url <> ''
""",
    sent=sql.Literal(S.SENT),
    of_attempt=_OF_ATTEMPT,
)

# → failed or expired (%(status)s), with the provider's code and our detail.
FINAL = _build(
    """
    UPDATE dispatch_message AS m SET status = %(status)s, provider = c.provider, code = c.code, detail = c.detail,
           lease_until = NULL, needs_reconcile = FALSE
    FROM json_to_recordset(%(rows)s::json) AS c(id uuid, attempt int, provider text, code text, detail text)
    WHERE {of_attempt} AND %(status)s IN ({final})
    RETURNING m.id
""",
    of_attempt=_OF_ATTEMPT,
    final=sql.SQL(", ").join([sql.Literal(S.FAILED), sql.Literal(S.EXPIRED)]),
)

# → retry_wait until its countdown (plus grace) has passed; `ambiguous`: ask the provider before resending.
RETRY = _build(
    """
    UPDATE dispatch_message AS m SET status = {retry_wait}, provider = c.provider, code = c.code, detail = c.detail,
           lease_until = now() + make_interval(secs => c.lease_seconds), needs_reconcile = c.ambiguous
    FROM json_to_recordset(%(rows)s::json)
         AS c(id uuid, attempt int, provider text, code text, detail text, lease_seconds float8, ambiguous bool)
    WHERE {of_attempt}
    RETURNING m.id
""",
    retry_wait=sql.Literal(S.RETRY_WAIT),
    of_attempt=_OF_ATTEMPT,
)

# --- the sweeper's beat jobs (apps.dispatch.delivery.sweeper) -------------------------------------

# Scheduled messages whose time has come (dispatch_due, a batch, locked so that two runs never share
# one) → queued: DUE_IDS, then DUE by those ids (plan-time pruning to their partitions).
DUE_IDS = _build(
    """
    SELECT message_id FROM dispatch_due
    WHERE kind = {scheduled} AND provider = '' AND at <= now()
    ORDER BY at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
""",
    scheduled=sql.Literal(DueKind.SCHEDULED),
)
DUE = _build(
    """
    UPDATE dispatch_message SET status = {queued}, lease_until = now() + %(lease)s
    WHERE id = ANY(%(ids)s) AND {scheduled}
    RETURNING id, priority
""",
    scheduled=_is(S.SCHEDULED),
    queued=sql.Literal(S.QUEUED),
)
# Rows of messages that left `scheduled` without the trigger seeing it (none expected): dropped.
DUE_STALE = _build(
    "DELETE FROM dispatch_due WHERE kind = {scheduled} AND message_id = ANY(%(ids)s)",
    scheduled=sql.Literal(DueKind.SCHEDULED),
)

# Leased messages past their lease and their TTL: the sweeper expires them (see EXPIRE).
LEASED = (S.QUEUED, S.RETRY_WAIT, S.SENDING)
LAPSED_AND_EXPIRED = _build(
    "SELECT id FROM dispatch_message WHERE {leased} AND lease_until < now() AND expires_at <= now() LIMIT %(batch)s",
    leased=_in(LEASED),
)

# Leases that ran out: enqueued again (a `sending` one → retry_wait: its worker died mid-send, and its
# provider may have the message, so it is asked before resending). A queued message past its lease is
# only lost if its lane has drained (or it is long overdue): re-enqueueing behind a backlog that still
# holds its task would only add copies. Rows: id, priority, and the status, lease, attempts and
# provider it had.
LAPSED = _build(
    """
    WITH lost AS (
        SELECT id, status, lease_until, attempts, provider FROM dispatch_message
        WHERE lease_until < now()
          AND ({retrying}
               OR ({queued} AND (priority = ANY(%(idle_lanes)s) OR lease_until < now() - %(overdue)s)))
        ORDER BY lease_until LIMIT %(batch)s FOR UPDATE SKIP LOCKED
    )
    UPDATE dispatch_message AS m SET lease_until = now() + %(lease)s,
           status = CASE WHEN {was_sending} THEN {retry_wait} ELSE m.status END,
           needs_reconcile = m.needs_reconcile OR ({was_sending} AND m.provider <> '')
    FROM lost WHERE m.id = lost.id
    RETURNING m.id, m.priority, lost.status, lost.lease_until, lost.attempts, lost.provider
""",
    retrying=_in((S.RETRY_WAIT, S.SENDING)),
    queued=_is(S.QUEUED),
    was_sending=_is(S.SENDING, "m.status"),
    retry_wait=sql.Literal(S.RETRY_WAIT),
)

# --- the sender's and the receipts' moves ----------------------------------------------------------

# → canceled while nothing has been handed to a provider.
CANCEL = _build(
    """
    UPDATE dispatch_message SET status = {canceled}, code = 'canceled', detail = %(detail)s, lease_until = NULL
    WHERE id = %(id)s AND {cancelable}
    RETURNING id
""",
    canceled=sql.Literal(S.CANCELED),
    cancelable=_in(moving_to(S.CANCELED)),
)

# A receipt's move, as a CTE `moved` over `best` (mid, status, code, detail, reported_at: each
# message's best report): delivered or undelivered, only forward (apps.receipts.matching splices it
# between its match and its events). Delivered wins over undelivered; the provider's clock, unless it
# says before we sent (reports often have whole seconds): then the moment the report reached us.
RECEIPT_MOVE = _build(
    """
    moved AS (
        UPDATE dispatch_message AS m
        SET status = c.status,
            code = CASE WHEN c.status = {delivered} THEN '' ELSE left(c.code, 64) END,
            detail = CASE WHEN c.status = {delivered} THEN '' ELSE c.detail END,
            sent_at = COALESCE(m.sent_at, LEAST(c.reported_at, now())),
            delivered_at = CASE WHEN c.status <> {delivered} THEN m.delivered_at
                                WHEN m.sent_at IS NULL OR c.reported_at > m.sent_at THEN LEAST(c.reported_at, now())
                                ELSE now() END,
            lease_until = NULL, needs_reconcile = FALSE
        FROM best c, accounts_account a
        -- `= ANY` of the ids: by primary key, whatever the planner guesses of `best`'s size.
        WHERE m.id = c.mid AND m.id = ANY(ARRAY(SELECT mid FROM best)) AND a.id = m.account_id
          AND (({to_undelivered}) OR ({to_delivered_only} AND c.status = {delivered}))
        RETURNING m.id, m.status, m.channel, m.provider, m.account_id, m.code, a.callback_url <> '' AS owed,
                  extract(epoch FROM m.delivered_at - m.sent_at)::float8 AS latency,
                  m.provider || ' reported ' || m.status || CASE WHEN c.code = '' THEN ''
                      ELSE ' (' || c.code || CASE WHEN c.detail = '' THEN '' ELSE ': ' || c.detail END || ')' END AS explanation,
                  left(c.code, 64) AS report_code
    )""",
    delivered=sql.Literal(S.DELIVERED),
    to_undelivered=_in(moving_to(S.UNDELIVERED), "m.status"),
    to_delivered_only=_in(set(moving_to(S.DELIVERED)) - set(moving_to(S.UNDELIVERED)) - {S.SENDING}, "m.status"),
)
# A report may be applied to a message a provider has accepted; one still being sent (or not yet)
# keeps its reports unmatched until it is `sent`.
RECEIPT_APPLICABLE_FROM = moving_to(S.UNDELIVERED)
NOT_YET_SENT = (S.SCHEDULED, S.QUEUED, S.SENDING)
