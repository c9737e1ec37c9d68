from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.templates.models import MessageTemplate, Status
from messaging_center.errors import NotFound


class TemplateNotFound(NotFound):
    code = "template_not_found"
    default_detail = "No such template."


class TemplateDisabled(TemplateNotFound):
    """A disabled template refuses to send; same status and code as an unknown one, the detail says why."""


def template_list(
    *, account_id: uuid.UUID, channel: str | None = None, category: str | None = None, status: str | None = None
) -> QuerySet[MessageTemplate]:
    """The account's templates that are not deleted, disabled ones included."""
    queryset = MessageTemplate.objects.filter(account_id=account_id, deleted_at__isnull=True)
    if channel:
        queryset = queryset.filter(channel=channel)
    if category:
        queryset = queryset.filter(category=category)
    if status:
        queryset = queryset.filter(status=status)
    return queryset


def template_detail(*, account_id: uuid.UUID, code: str) -> MessageTemplate:
    """A template of the account by code, disabled or not; deleted and foreign codes are not found."""
    template = template_list(account_id=account_id).filter(code=code).first()
    if template is None:
        raise TemplateNotFound(f"No template with code {code!r}.")
    return template


def template_get(*, account_id: uuid.UUID, code: str) -> MessageTemplate:
    """The template to send with: 404 `template_not_found` when unknown, deleted, foreign or disabled."""
    template = template_detail(account_id=account_id, code=code)
    if template.status != Status.ACTIVE:
        raise TemplateDisabled(f"Template {code!r} is disabled; set its status to active to send with it.")
    return template
