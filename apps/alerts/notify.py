"""The two roads an alert takes to operators: the webhook of `ALERT_WEBHOOK_URL` (the DingTalk/Feishu
robot shape) and our own send path, as the internal ops account, to every active operator's WeCom,
e-mail and phone.

The webhook goes through the one road out (messaging_center/outbound.py: one parse, one resolution,
the checked address connected to, no redirects) with private addresses allowed: the URL is set by
whoever deploys the service, not by a tenant, so the address check that keeps tenants off our
network has nothing to guard here, and a robot relay inside the network is a legitimate target.

Operator messages are ordinary messages of the ops account (created on first use with its three
templates, `ops_alert_wecom`, `ops_alert_email`, `ops_alert_sms`, editable in admin: a template-based
SMS provider needs its approved template id there). They go through `message_send`, like any API
send: they are stored, routed, retried, and show in the message list."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import urllib3
from django.conf import settings
from django.db import IntegrityError, transaction

from apps.accounts.models import Account
from apps.accounts.services import account_create
from apps.alerts.models import OperatorRecipient
from apps.dispatch.accept.send import message_send
from apps.templates.models import MessageTemplate
from apps.templates.services import template_create
from messaging_center import outbound
from messaging_center.errors import ServiceError

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = urllib3.Timeout(connect=2.0, read=3.0)


@dataclass(frozen=True)
class OpsChannel:
    channel: str
    template: str
    address_key: str  # the send request's key for the address, and the OperatorRecipient field
    field: str
    fields: dict[str, str]


OPS_CHANNELS = (
    OpsChannel("wecom", "ops_alert_wecom", "wecom_userid", "wecom_userid", {"title": "{{subject}}"}),
    OpsChannel("email", "ops_alert_email", "email", "email", {"title": "{{subject}}"}),
    OpsChannel("sms", "ops_alert_sms", "phone", "phone", {"sms_signature": "MC"}),
)


@dataclass(frozen=True)
class Sent:
    webhook: str  # the webhook's answer, or why none
    operators: str  # the messages made for operators, or why none


def webhook_post(content: str) -> str:
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return "ALERT_WEBHOOK_URL not set"
    body = json.dumps({"msgtype": "text", "text": {"content": content}}, ensure_ascii=False).encode()
    try:
        response = outbound.post(
            url,
            body=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=WEBHOOK_TIMEOUT,
            allow_private=True,
        )
    except outbound.Refused as error:
        return f"refused: {error}"
    except (urllib3.exceptions.HTTPError, OSError) as error:
        logger.warning("alert webhook failed: %s", error)
        return f"failed: {error.__class__.__name__}"
    if response.status >= 300:
        logger.warning("alert webhook answered HTTP %s", response.status)
    return f"HTTP {response.status}"


def ops_account() -> Account:
    """The internal account operator notices are sent as, with its templates; made on first use."""
    name = settings.ALERT_OPS_ACCOUNT
    account = Account.objects.filter(name=name).first()
    if account is None:
        try:
            with transaction.atomic():
                account = account_create(name=name).api_key.account
        except (IntegrityError, ServiceError):  # made at the same moment by another run
            account = Account.objects.get(name=name)
    existing = set(MessageTemplate.objects.filter(account=account, deleted_at__isnull=True).values_list("code", flat=True))
    for ops in OPS_CHANNELS:
        if ops.template not in existing:
            template_create(
                account=account,
                code=ops.template,
                name=f"Operator notice ({ops.channel})",
                channel=ops.channel,
                category="transactional",
                content="{{content}}",
                priority="high",
                **ops.fields,
            )
    return account


def operators_send(*, subject: str, content: str, channels: tuple[str, ...] = ("wecom", "email", "sms")) -> str:
    """One send per channel to every active operator with an address for it; what became of each."""
    operators = list(OperatorRecipient.objects.filter(active=True))
    if not operators:
        return "no active operator recipients"
    account = ops_account()
    outcomes = []
    for ops in OPS_CHANNELS:
        to = [{ops.address_key: getattr(o, ops.field)} for o in operators if getattr(o, ops.field)]
        if ops.channel not in channels or not to:
            continue
        data = {"template": ops.template, "to": to, "params": {"subject": subject, "content": content}}
        try:
            with transaction.atomic():  # written alone, published on commit (not through the group writer's thread)
                response = message_send(account=account, data=data)
        except ServiceError as error:
            logger.warning("operator notice by %s refused: %s", ops.channel, error.detail)
            outcomes.append(f"{ops.channel}: refused ({error.detail})")
            continue
        messages = json.loads(response.body)["messages"]
        made = ", ".join(f"{m['id']} {m['status']}" + (f" ({m['code']})" if m.get("code") else "") for m in messages)
        outcomes.append(f"{ops.channel}: {made}")
    return "; ".join(outcomes) or "no operator has an address for these channels"


def notify(*, subject: str, content: str, channels: tuple[str, ...] = ("wecom", "email", "sms")) -> Sent:
    """Both roads; neither's failure stops the other (each is recorded with the notice)."""
    webhook = webhook_post(content)
    try:
        operators = operators_send(subject=subject, content=content, channels=channels)
    except Exception as error:  # a notice must never stop the evaluation of the other rules
        logger.exception("operator notice failed")
        operators = f"failed: {error.__class__.__name__}"
    return Sent(webhook, operators)
