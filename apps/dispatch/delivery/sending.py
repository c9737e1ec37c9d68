"""Sending claimed messages through providers, concurrently on pooled connections."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence

from django.conf import settings

from apps.accounts.models import PushToken
from apps.accounts.services import push_tokens_deactivate
from apps.dispatch import routing
from apps.dispatch.delivery.choice import Attempt, Choice, group_into_calls, parts_of, route_messages
from apps.dispatch.delivery.claims import Claimed
from apps.dispatch.delivery.finishing import finish_attempts
from apps.dispatch.delivery.hedge import Call, settle
from apps.dispatch.delivery.pool import executor
from apps.dispatch.delivery.reconcile import reconcile, record_chosen_providers
from apps.dispatch.events import LOCAL_THROTTLE
from apps.dispatch.policy.throttling import limiter
from apps.dispatch.providers.base import OutboundMessage, ProviderError, SendResult
from apps.dispatch.sealing import is_sealed, unseal
from apps.templates.models import MessageTemplate
from apps.templates.services import template_render
from messaging_center import ids

logger = logging.getLogger(__name__)


def outbound_message(
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


def send_one(route: routing.Route, message: OutboundMessage) -> SendResult | ProviderError:
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


def _send_alone(route: routing.Route, message: OutboundMessage) -> list[SendResult | ProviderError]:
    return [send_one(route, message)]


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


DEAD_TOKEN_CODES = frozenset({"unregistered_token", "invalid_token"})


def push_targets(messages: Sequence[Claimed]) -> dict[uuid.UUID, list[tuple[str, str]]]:
    """Push messages addressed by user_id → every active (token, platform) of the recipient, one query."""
    by_user = [m for m in messages if m.user_id and m.address == m.user_id]
    if not by_user:
        return {}

    tokens: dict[tuple[uuid.UUID, str], list[tuple[str, str]]] = {}
    rows = PushToken.objects.filter(
        active=True,
        recipient__account_id__in={m.account_id for m in by_user},
        recipient__user_id__in={m.user_id for m in by_user},
    ).values_list("recipient__account_id", "recipient__user_id", "token", "platform")
    for account_id, user_id, token, platform in rows:
        tokens.setdefault((account_id, user_id), []).append((token, platform))
    return {m.id: tokens.get((m.account_id, m.user_id), []) for m in by_user}


def _template_of(message: Claimed, templates: Mapping[uuid.UUID, MessageTemplate]) -> MessageTemplate | None:
    return templates.get(message.template_id) if message.template_id else None


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
        outcome = send_one(route, outbound_message(attempt.message, _template_of(attempt.message, templates), route, to=token))
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
        push_tokens_deactivate(tokens=dead)


def _start_calls(choice: Choice) -> list[Call]:
    """The choice's provider calls (single sends and batch calls), started on the send threads."""
    calls = []
    for single in choice.singles:
        route = single.route
        assert route is not None  # group_into_calls leaves out attempts without a route
        outbound = outbound_message(single.message, _template_of(single.message, choice.templates), route)
        calls.append(Call(route, [single], executor().submit(_send_alone, route, outbound)))
    for part, reference in choice.parts:
        route = part[0].route
        assert route is not None
        outbound_part = [
            outbound_message(a.message, _template_of(a.message, choice.templates), route, batch_reference=reference) for a in part
        ]
        calls.append(Call(route, part, executor().submit(_send_batch, route, outbound_part)))
    return calls


def send_through_providers(claimed: Sequence[Claimed], choice: Choice | None = None) -> None:
    if not claimed:
        return
    choice = choice.only(claimed) if choice is not None else Choice.start(claimed)
    chosen = {a.message.id for a in choice.attempts}
    rest = [c for c in claimed if c.id not in chosen]
    if rest:
        choice.add_templates(rest)
        templates = choice.templates
        settled = reconcile(
            [c for c in rest if c.needs_reconcile and c.previous_provider],
            lambda m, route, reference: outbound_message(m, _template_of(m, templates), route, batch_reference=reference),
        )
        choice.attempts.extend(settled)
        done = {a.message.id for a in settled}
        later = Choice(choice.templates, choice.health, demoted=choice.demoted)
        group_into_calls(later, route_messages([c for c in rest if c.id not in done], later))
        # Only where a crash mid-send could be reconciled: this is a round trip before the send.
        record_chosen_providers(later)
        choice.extend(later)
    templates = choice.templates
    attempts = choice.attempts
    fanout = push_targets([a.message for a in attempts if a.outcome is None and a.message.channel == "push"])
    unfanned = {a.message.id for a in attempts} - fanout.keys()
    singles = [a for a in choice.singles if a.message.id in unfanned]
    parts = parts_of(choice.parts, unfanned)
    device_futures = [
        (a, executor().submit(_send_to_devices, a, fanout[a.message.id], templates))
        for a in attempts
        if a.outcome is None and a.message.id in fanout
    ]
    calls = _start_calls(Choice(templates, choice.health, parts=parts, singles=singles))
    settle(calls, choice, _start_calls)
    for attempt, future in device_futures:
        attempt.outcome = future.result()
    finish_attempts(attempts, choice.health)
    _deactivate_dead_tokens(attempts)
