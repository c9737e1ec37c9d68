"""Sending claimed messages through providers: route, send concurrently, finish conditionally,
retry transient failures with backoff on another provider while the TTL lasts.

Every finish is `UPDATE … WHERE status = 'sending' AND attempts = <the claimed attempt>`, so a
message whose lease ran out and was claimed again elsewhere is never finished twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import uuid
from collections.abc import Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from apps.dispatch import publish, routing
from apps.dispatch.models import Status
from apps.dispatch.providers.base import LookupUnsupported, OutboundMessage, ProviderError, SendResult
from apps.dispatch.sealing import is_sealed, unseal
from apps.dispatch.throttling import limiter
from apps.templates.models import MessageTemplate
from apps.templates.services import template_render
from messaging_center import ids, metrics
from messaging_center.db import bound_cursor, json_rows
from messaging_center.ttl_cache import TtlCache

if TYPE_CHECKING:
    from apps.dispatch.delivery import Claimed

logger = logging.getLogger(__name__)

SEND_THREADS = int(os.environ.get("DISPATCH_SEND_THREADS", "32"))
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
MAX_ATTEMPTS = 10
# A timeout after the request left us may have been sent: wait this long for a receipt to settle it
# (a receipt moves the message out of retry_wait, so the retry finds nothing to do) before resending.
RECONCILE_SECONDS = 10.0
RETRY_LEASE_GRACE = dt.timedelta(seconds=30)
LOCAL_THROTTLE = "provider_rate_limited"

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One pool per process: a Celery prefork child must not inherit its parent's threads."""
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid:
        with _pool_lock:
            if _pool is None or _pool[0] != pid:
                _pool = (pid, ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send"))
    return _pool[1]


def backoff_seconds(attempt: int) -> float:
    """Exponential with full jitter around the step: 1, 2, 4 … s, capped, never below half a step."""
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return step * random.uniform(0.5, 1.0)


@dataclass
class Attempt:
    message: Claimed
    route: routing.Route | None
    outcome: SendResult | ProviderError | None = None
    dead_tokens: list[str] = field(default_factory=list)


def _outbound(
    message: Claimed, template: MessageTemplate | None, route: routing.Route, to: str | None = None, batch_reference: str = ""
) -> OutboundMessage:
    provider_ids = (template.provider_template_ids or {}) if template else {}
    provider_template = provider_ids.get(route.kind)
    params = {k: str(v) for k, v in (message.params or {}).items()}
    content, title = message.content, message.title
    if template is not None and is_sealed(params):
        params = unseal(params)  # a verification code: stored encrypted and masked, rendered only here
        rendered = template_render(template=template, params=params)
        content, title = rendered.content, rendered.title
    variables = tuple(template.variables) if template else ()
    if isinstance(provider_template, dict):
        # WeChat: {"template_id": …, "fields": {"<wechat field>": "<our variable>"}} → the fields by name.
        fields = provider_template.get("fields") or {}
        params = {**params, **{field: params.get(variable, "") for field, variable in fields.items()}}
        variables = tuple(fields) or variables
        provider_template = provider_template.get("template_id")
    html = ""
    if message.channel == "email" and template is not None:
        html = template_render(template=template, params=params).html or ""
    return OutboundMessage(
        message_id=ids.encode("msg", message.id),
        to=to or message.address,
        content=content,
        params=params,
        variables=variables,
        provider_template_id=str(provider_template) if provider_template is not None else None,
        sms_signature=template.sms_signature if template else "",
        callback_url=f"{settings.RECEIPTS_BASE_URL}/api/v1/receipts/{route.kind}",
        title=title,
        html=html,
        expires_at=message.expires_at,
        priority=message.priority,
        batch_reference=batch_reference,
    )


def _send_one(route: routing.Route, message: OutboundMessage) -> SendResult | ProviderError:
    if route.rate_limit:
        decision = limiter().take_request_token(account_id=f"provider:{route.name}", per_second=route.rate_limit)
        if not decision.allowed:
            return ProviderError(LOCAL_THROTTLE, f"{route.name} is at its configured {route.rate_limit}/s", permanent=False)
    try:
        return route.adapter.send(message)
    except ProviderError as error:
        return error
    except Exception as error:  # an adapter bug must not lose the message: treat as transient
        logger.exception("adapter %s raised unexpectedly", route.name)
        return ProviderError("adapter_error", f"{type(error).__name__}: {error}", permanent=False)


def _send_batch(route: routing.Route, messages: list[OutboundMessage]) -> list[SendResult | ProviderError]:
    """A provider's batch call for several messages: one outcome each, in order."""
    try:
        outcomes = route.adapter.send_batch(messages)
    except Exception as error:  # an adapter bug must not lose the messages: treat as transient
        logger.exception("adapter %s raised unexpectedly", route.name)
        failure = ProviderError("adapter_error", f"{type(error).__name__}: {error}", permanent=False)
        return [failure] * len(messages)
    if len(outcomes) != len(messages):
        logger.error("adapter %s answered %d outcomes for %d messages", route.name, len(outcomes), len(messages))
        unknown = ProviderError("adapter_error", "the batch answer did not match the messages", permanent=False, ambiguous=True)
        return [unknown] * len(messages)
    return outcomes


def _reconcile(claimed: Sequence[Claimed]) -> list[Attempt]:
    """Asks the provider of an attempt whose outcome is unknown whether it already has the message.
    Returns the settled attempts: found → sent without sending again; the lookup failing → wait and
    ask again. Messages whose provider says no, or cannot be asked, are sent again by the caller."""
    asks: list[tuple[Claimed, routing.Route]] = []
    for message in claimed:
        route = routing.ROUTES.named(message.previous_provider)
        if route is not None:
            asks.append((message, route))
    since = timezone.now() - dt.timedelta(days=1)

    def ask(message: Claimed, route: routing.Route) -> SendResult | ProviderError | None:
        try:
            return route.adapter.lookup_sent(
                message_id=ids.encode("msg", message.id),
                to=message.address,
                since=since,
                batch_reference=message.previous_reference if message.previous_reference.startswith(BATCH_REFERENCE) else "",
            )
        except LookupUnsupported:
            return None
        except ProviderError as error:
            return ProviderError(
                error.code, f"could not ask whether it was sent: {error.detail}", permanent=False, ambiguous=True
            )

    futures = [(message, route, _executor().submit(ask, message, route)) for message, route in asks]
    settled = []
    for message, route, future in futures:
        outcome = future.result()
        if outcome is not None:
            settled.append(Attempt(message, route, outcome))
    return settled


# A batch call's reference starts so; it never looks like a provider's own message id.
BATCH_REFERENCE = "mcb-"


def _record_chosen_providers(choice: Choice) -> None:
    """Before sending messages claimed without a choice (those whose earlier attempt had to be asked
    about first): which provider gets each message, and the reference of the batch call that carries
    it, so that after a crash mid-send the reconciliation knows whom to ask, and for what."""
    recorded = choice.recorded()
    if recorded:
        attempts = [a for a in choice.attempts if a.message.id in recorded]
        _update(
            """
            UPDATE dispatch_message AS m SET provider = c.provider,
                   provider_message_id = CASE WHEN c.reference <> '' THEN c.reference ELSE m.provider_message_id END
            FROM json_to_recordset(%(rows)s::json) AS c(id uuid, attempt int, provider text, reference text)
            WHERE m.id = c.id AND m.id = ANY(%(ids)s) AND m.status = 'sending' AND m.attempts = c.attempt
            RETURNING m.id
            """,
            _rows(attempts, reference=[recorded[a.message.id][1] for a in attempts]),
        )


DEAD_TOKEN_CODES = frozenset({"unregistered_token", "invalid_token"})


def push_targets(messages: Sequence[Claimed]) -> dict[uuid.UUID, list[tuple[str, str]]]:
    """Push messages addressed by user_id → every active (token, platform) of the recipient, one query."""
    by_user = [m for m in messages if m.user_id and m.address == m.user_id]
    if not by_user:
        return {}
    from apps.accounts.models import PushToken

    tokens: dict[tuple[uuid.UUID, str], list[tuple[str, str]]] = {}
    rows = PushToken.objects.filter(
        active=True,
        recipient__account_id__in={m.account_id for m in by_user},
        recipient__user_id__in={m.user_id for m in by_user},
    ).values_list("recipient__account_id", "recipient__user_id", "token", "platform")
    for account_id, user_id, token, platform in rows:
        tokens.setdefault((account_id, user_id), []).append((token, platform))
    return {m.id: tokens.get((m.account_id, m.user_id), []) for m in by_user}


def _send_to_devices(
    attempt: Attempt, devices: list[tuple[str, str]], templates: dict[uuid.UUID, MessageTemplate]
) -> SendResult | ProviderError:
    """One push message to every device of its recipient, each through a provider of the device's
    platform: sent when any device took it; dead tokens are reported for deactivation."""
    if not devices:
        return ProviderError("no_device", "The recipient has no active push token.", permanent=True)
    routes = routing.ROUTES.for_channel("push")
    accepted: list[str] = []
    errors: list[ProviderError] = []
    for token, platform in devices:
        route = next((r for r in routes if r.kind == platform), None)
        if route is None:
            errors.append(ProviderError("no_provider", f"No enabled push provider for {platform} tokens.", permanent=True))
            continue
        outcome = _send_one(route, _outbound(attempt.message, templates.get(attempt.message.template_id), route, to=token))  # type: ignore[arg-type]
        if isinstance(outcome, SendResult):
            if not accepted:
                attempt.route = route  # the message is recorded as sent through its first accepting provider
            accepted.append(outcome.provider_message_id)
        else:
            if not accepted:
                attempt.route = route
            if outcome.code in DEAD_TOKEN_CODES:
                attempt.dead_tokens.append(token)
            errors.append(outcome)
    if accepted:
        return SendResult(provider_message_id=",".join(accepted)[:128], raw={"devices": len(accepted)})
    transient = [e for e in errors if not e.permanent]
    return transient[0] if transient else errors[0]


def _deactivate_dead_tokens(attempts: Sequence[Attempt]) -> None:
    dead = [token for a in attempts for token in a.dead_tokens]
    if dead:
        from apps.accounts.services import push_tokens_deactivate

        push_tokens_deactivate(tokens=dead)


# Templates by id, for routing (a template's provider template ids): a chunk of messages costs no
# query for them. A template saved in this process clears it (apps.dispatch.apps); others within 5 s,
# as the send path's own cache.
TEMPLATES_BY_ID: TtlCache[MessageTemplate] = TtlCache(seconds=5)


@dataclass
class Choice:
    """Providers chosen for messages before their claim, which records them (see delivery.claim):
    each message's attempt (a route, or the error that routing found) and the calls that carry them."""

    templates: dict[uuid.UUID, MessageTemplate]
    health: routing.Health
    attempts: list[Attempt] = field(default_factory=list)
    parts: list[tuple[list[Attempt], str]] = field(default_factory=list)
    singles: list[Attempt] = field(default_factory=list)

    @classmethod
    def start(cls, messages: Sequence[Claimed]) -> Choice:
        routing.ROUTES.refresh()
        choice = cls(templates={}, health=routing.health())
        choice.add_templates(messages)
        return choice

    def add_templates(self, messages: Sequence[Claimed]) -> None:
        wanted = {c.template_id for c in messages if c.template_id and c.template_id not in self.templates}
        missing = set()
        for template_id in wanted:
            template = TEMPLATES_BY_ID.get(template_id)
            if template is None:
                missing.add(template_id)
            else:
                self.templates[template_id] = template
        if missing:
            for template in MessageTemplate.objects.filter(id__in=missing):
                self.templates[template.id] = TEMPLATES_BY_ID.put(template.id, template)

    def recorded(self) -> dict[uuid.UUID, tuple[str, str]]:
        """Message id → (provider, batch reference) where a crash mid-send could be reconciled:
        the provider can be asked. Others are sent again anyway after a crash."""
        references = {a.message.id: reference for part, reference in self.parts for a in part}
        return {
            a.message.id: (a.route.name, references.get(a.message.id, ""))
            for a in self.attempts
            if a.outcome is None and a.route is not None and a.route.adapter.can_be_asked
        }

    def only(self, claimed: Sequence[Claimed]) -> Choice:
        """The choice for the messages the claim won (a message claimed elsewhere is left out), each
        attempt now about the claimed message (which knows its claim's time)."""
        won = {c.id: c for c in claimed}
        for attempt in self.attempts:
            attempt.message = won.get(attempt.message.id, attempt.message)
        return Choice(
            self.templates,
            self.health,
            [a for a in self.attempts if a.message.id in won],
            _parts_of(self.parts, won),
            [a for a in self.singles if a.message.id in won],
        )

    def extend(self, other: Choice) -> None:
        self.attempts.extend(other.attempts)
        self.parts.extend(other.parts)
        self.singles.extend(other.singles)


def _parts_of(parts: Sequence[tuple[list[Attempt], str]], kept: Container[uuid.UUID]) -> list[tuple[list[Attempt], str]]:
    """The batch calls with only the attempts of the kept messages; calls left empty are dropped."""
    trimmed = [([a for a in part if a.message.id in kept], reference) for part, reference in parts]
    return [(part, reference) for part, reference in trimmed if part]


def _route(messages: Sequence[Claimed], choice: Choice) -> list[Attempt]:
    allowed: dict[str, set[str]] = {}
    attempts = []
    for message in messages:
        template = choice.templates.get(message.template_id) if message.template_id else None
        routes = routing.usable(
            routing.ROUTES.for_channel(message.channel),
            (template.provider_template_ids or {}) if template else {},
            message.address,
        )
        if not routes:
            attempts.append(
                Attempt(
                    message,
                    None,
                    ProviderError(
                        "no_provider",
                        f"No enabled {message.channel} provider can send this template to this address.",
                        permanent=True,
                    ),
                )
            )
            continue
        if message.channel not in allowed:
            allowed[message.channel] = choice.health.allowed([r.name for r in routing.ROUTES.for_channel(message.channel)])
        route = routing.choose(
            routes, allowed=allowed[message.channel], avoid=message.previous_provider if message.attempt > 1 else ""
        )
        if route is None:
            attempts.append(
                Attempt(message, None, ProviderError("providers_unhealthy", "Every provider's circuit is open.", permanent=False))
            )
            continue
        attempts.append(Attempt(message, route))
    return attempts


def _group(choice: Choice, attempts: list[Attempt]) -> None:
    """Adds the attempts to the choice: routed ones to a provider's batch call or a single send."""
    choice.attempts.extend(attempts)
    batches: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        route = attempt.route
        if attempt.outcome is not None or route is None:
            continue
        # A provider-side rate limit is taken per message, so those go one by one.
        if route.adapter.sends_batches and not route.rate_limit:
            batches.setdefault(route.name, []).append(attempt)
        else:
            choice.singles.append(attempt)
    for group in batches.values():
        size = group[0].route.adapter.max_batch  # type: ignore[union-attr]
        for start in range(0, len(group), size):
            part = group[start : start + size]
            askable = len(part) > 1 and part[0].route.adapter.can_be_asked  # type: ignore[union-attr]
            choice.parts.append((part, f"{BATCH_REFERENCE}{ids.uuid7().hex}" if askable else ""))


def choose_providers(messages: Sequence[Claimed]) -> Choice:
    """Before the claim: providers for the messages that need no reconciliation first (a message
    whose earlier attempt may have reached its provider is routed after asking, see below)."""
    choice = Choice.start(messages)
    _group(choice, _route([m for m in messages if not m.needs_reconcile], choice))
    return choice


def send_through_providers(claimed: Sequence[Claimed], choice: Choice | None = None) -> None:
    if not claimed:
        return
    choice = choice.only(claimed) if choice is not None else Choice.start(claimed)
    chosen = {a.message.id for a in choice.attempts}
    rest = [c for c in claimed if c.id not in chosen]
    if rest:
        choice.add_templates(rest)
        settled = _reconcile([c for c in rest if c.needs_reconcile and c.previous_provider])
        choice.attempts.extend(settled)
        done = {a.message.id for a in settled}
        later = Choice(choice.templates, choice.health)
        _group(later, _route([c for c in rest if c.id not in done], later))
        # Only where a crash mid-send could be reconciled: this is a round trip before the send.
        _record_chosen_providers(later)
        choice.extend(later)
    templates = choice.templates
    attempts = choice.attempts
    fanout = push_targets([a.message for a in attempts if a.outcome is None and a.message.channel == "push"])
    unfanned = {a.message.id for a in attempts} - fanout.keys()
    singles = [a for a in choice.singles if a.message.id in unfanned]
    parts = _parts_of(choice.parts, unfanned)
    device_futures = [
        (a, _executor().submit(_send_to_devices, a, fanout[a.message.id], templates))
        for a in attempts
        if a.outcome is None and a.message.id in fanout
    ]
    futures = [
        _executor().submit(_send_one, a.route, _outbound(a.message, templates.get(a.message.template_id), a.route))  # type: ignore[arg-type]
        for a in singles
    ]
    batch_futures = []
    for part, reference in parts:
        route = part[0].route
        assert route is not None
        outbound = [_outbound(a.message, templates.get(a.message.template_id), route, batch_reference=reference) for a in part]
        batch_futures.append((part, _executor().submit(_send_batch, route, outbound)))
    for attempt, future in zip(singles, futures, strict=True):
        attempt.outcome = future.result()
    for part, batch_future in batch_futures:
        for attempt, outcome in zip(part, batch_future.result(), strict=True):
            attempt.outcome = outcome
    for attempt, future in device_futures:
        attempt.outcome = future.result()
    _finish(attempts, choice.health)
    _deactivate_dead_tokens(attempts)


def _finish(attempts: list[Attempt], health: routing.Health) -> None:
    sent: list[Attempt] = []
    failed: list[Attempt] = []
    retry: list[tuple[Attempt, float]] = []
    expired: list[Attempt] = []
    tally: dict[str, list[int]] = {}  # provider → [successes, failures], recorded once per chunk
    now = timezone.now()
    for attempt in attempts:
        outcome, route = attempt.outcome, attempt.route
        if isinstance(outcome, SendResult):
            sent.append(attempt)
            if route:
                tally.setdefault(route.name, [0, 0])[0] += 1
            continue
        assert isinstance(outcome, ProviderError)
        counts_against_provider = (
            route is not None
            and outcome.code != LOCAL_THROTTLE
            and (not outcome.permanent or outcome.provider_fault or outcome.ambiguous)
        )
        if counts_against_provider:
            tally.setdefault(route.name, [0, 0])[1] += 1  # type: ignore[union-attr]
        if outcome.permanent and not outcome.provider_fault:
            failed.append(attempt)
            continue
        if outcome.permanent and outcome.provider_fault and not _has_alternative(attempt):
            failed.append(attempt)
            continue
        countdown = RECONCILE_SECONDS if outcome.ambiguous else backoff_seconds(attempt.message.attempt)
        if outcome.code == LOCAL_THROTTLE:
            countdown = random.uniform(0.2, 1.0)
        if attempt.message.attempt >= MAX_ATTEMPTS:
            failed.append(attempt)
        elif now + dt.timedelta(seconds=countdown) >= attempt.message.expires_at:
            expired.append(attempt)
        else:
            retry.append((attempt, countdown))
    health.record(tally)
    _mark_sent(sent)
    _mark_final(failed, "failed")
    _mark_final(expired, "expired")
    _mark_retry(retry)


def _has_alternative(attempt: Attempt) -> bool:
    routes = routing.ROUTES.for_channel(attempt.message.channel)
    current = attempt.route.name if attempt.route else ""
    return any(r.name != current and r.serves(attempt.message.address) for r in routes)


def _rows(attempts: Sequence[Attempt], **columns: Sequence[Any]) -> dict[str, Any]:
    """Parameters of a statement about these attempts: `ids` (for the primary key index) and `rows`,
    each attempt's id, attempt and provider plus the given columns, as one JSON document for
    json_to_recordset (psycopg's dumping of text arrays cost about three times the client CPU)."""
    rows: list[dict[str, Any]] = [
        {"id": a.message.id, "attempt": a.message.attempt, "provider": a.route.name if a.route else ""} for a in attempts
    ]
    for name, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    return {"ids": [a.message.id for a in attempts], "rows": json_rows(rows)}


def _update(sql: str, params: dict[str, Any]) -> list[uuid.UUID]:
    with bound_cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _mark_sent(attempts: list[Attempt]) -> None:
    if not attempts:
        return

    params = _rows(
        attempts,
        pid=[a.outcome.provider_message_id for a in attempts],  # type: ignore[union-attr]
        detail=[_sent_detail(a) for a in attempts],
        event_id=[str(event_id) for event_id in ids.uuid7_many(len(attempts))],
        started=[a.message.claimed_at for a in attempts],
    )
    # The finish, its `sent` events and the status callbacks owed in one statement. Receipts that
    # arrived before the finish are looked for after its commit: one that lands while this
    # statement runs would be invisible to it (and its own match found the message still sending).
    with bound_cursor() as cursor:
        cursor.execute(
            """
        WITH sent AS (
            UPDATE dispatch_message AS m SET status = 'sent', provider = c.provider, provider_message_id = c.pid,
                   sent_at = now(), code = '', detail = '', lease_until = NULL, needs_reconcile = FALSE
            FROM json_to_recordset(%(rows)s::json)
                 AS c(id uuid, attempt int, provider text, pid text, detail text, event_id uuid, started timestamptz)
            WHERE m.id = c.id AND m.id = ANY(%(ids)s) AND m.status = 'sending' AND m.attempts = c.attempt
            RETURNING m.id, m.account_id, c.provider, c.detail, c.attempt, c.event_id, c.started
        ), events AS (
            INSERT INTO dispatch_messageevent (id, message_id, status, at, code, detail, provider, attempt, started_at)
            SELECT event_id, id, 'sent', now(), '', detail, provider, attempt, started FROM sent
        )
        SELECT 's', id, NULL FROM sent
        UNION ALL SELECT 'c', s.id, s.account_id FROM sent s JOIN accounts_account a ON a.id = s.account_id
                  WHERE a.callback_url <> ''
        """,
            params,
        )
        found = cursor.fetchall()
    done = {row[1] for row in found if row[0] == "s"}
    metrics.count(
        metrics.MESSAGES_SENT, ((a.message.channel, a.route.name) for a in attempts if a.message.id in done and a.route)
    )
    from apps.receipts.hooks import messages_sent

    messages_sent(sorted(done), [(row[1], row[2], "") for row in found if row[0] == "c"])


def _sent_detail(attempt: Attempt) -> str:
    assert attempt.route is not None and isinstance(attempt.outcome, SendResult)
    if attempt.outcome.raw.get("reconciled"):
        return f"{attempt.route.name} already had it (the earlier attempt's outcome was unknown); not sent again"
    return f"accepted by {attempt.route.name}"


def _mark_final(attempts: list[Attempt], status: str) -> None:
    if not attempts:
        return
    from apps.dispatch.delivery import record_events

    params = _rows(
        attempts,
        code=[a.outcome.code for a in attempts],  # type: ignore[union-attr]
        detail=[_detail(a, status) for a in attempts],
    )
    done = set(
        _update(
            """
        UPDATE dispatch_message AS m SET status = %(status)s, provider = c.provider, code = c.code, detail = c.detail,
               lease_until = NULL, needs_reconcile = FALSE
        FROM json_to_recordset(%(rows)s::json) AS c(id uuid, attempt int, provider text, code text, detail text)
        WHERE m.id = c.id AND m.id = ANY(%(ids)s) AND m.status = 'sending' AND m.attempts = c.attempt
        RETURNING m.id
        """,
            params | {"status": status},
        )
    )
    record_events(
        [
            (a.message.id, status, a.outcome.code, _detail(a, status), a.route.name if a.route else "", a.message.attempt)  # type: ignore[union-attr]
            for a in attempts
            if a.message.id in done
        ],
        started={a.message.id: a.message.claimed_at for a in attempts},
    )
    if status == "failed":
        metrics.count(
            metrics.MESSAGES_FAILED,
            ((a.message.channel, a.route.name if a.route else "") for a in attempts if a.message.id in done),
        )
    from apps.receipts.hooks import messages_reached  # status callbacks to business systems

    messages_reached(done, status)


def _detail(attempt: Attempt, status: str) -> str:
    error = attempt.outcome
    assert isinstance(error, ProviderError)
    where = f"{attempt.route.name}: " if attempt.route else ""
    if status == "expired":
        return f"The TTL would pass before another try ({where}{error.code}: {error.detail})."
    if attempt.message.attempt >= MAX_ATTEMPTS and not error.permanent:
        return f"Gave up after {attempt.message.attempt} attempts ({where}{error.code}: {error.detail})."
    return f"{where}{error.detail}" if error.detail else f"{where}{error.code}"


def _mark_retry(retries: list[tuple[Attempt, float]]) -> None:
    if not retries:
        return
    from apps.dispatch.delivery import record_events

    attempts = [a for a, _ in retries]
    params = _rows(
        attempts,
        code=[a.outcome.code for a in attempts],  # type: ignore[union-attr]
        detail=[_detail(a, "retry_wait") for a in attempts],
        lease_seconds=[countdown + RETRY_LEASE_GRACE.total_seconds() for _, countdown in retries],
        ambiguous=[bool(a.outcome.ambiguous) for a in attempts],  # type: ignore[union-attr]
    )
    done = set(
        _update(
            """
        UPDATE dispatch_message AS m SET status = 'retry_wait', provider = c.provider, code = c.code, detail = c.detail,
               lease_until = now() + make_interval(secs => c.lease_seconds), needs_reconcile = c.ambiguous
        FROM json_to_recordset(%(rows)s::json)
             AS c(id uuid, attempt int, provider text, code text, detail text, lease_seconds float8, ambiguous bool)
        WHERE m.id = c.id AND m.id = ANY(%(ids)s) AND m.status = 'sending' AND m.attempts = c.attempt
        RETURNING m.id
        """,
            params,
        )
    )
    record_events(
        [
            (
                a.message.id,
                Status.RETRY_WAIT,
                a.outcome.code,  # type: ignore[union-attr]
                f"{_detail(a, 'retry_wait')}; retrying in {countdown:.1f} s",
                a.route.name if a.route else "",
                a.message.attempt,
            )
            for a, countdown in retries
            if a.message.id in done
        ],
        started={a.message.id: a.message.claimed_at for a in attempts},
    )
    groups: dict[tuple[str, int], list[uuid.UUID]] = {}
    for attempt, countdown in retries:
        if attempt.message.id in done:
            groups.setdefault((attempt.message.priority, round(countdown)), []).append(attempt.message.id)
    for (lane, countdown), message_ids in groups.items():
        publish.publish_retry(lane=lane, message_ids=message_ids, countdown=max(0.1, float(countdown)))
