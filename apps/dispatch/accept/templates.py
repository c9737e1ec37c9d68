"""The send path's templates, cached per process, and the lane a template's messages take."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import Account
from apps.templates.selectors import template_get
from messaging_center.errors import ServiceError
from messaging_center.ttl_cache import TtlCache

# A template edit or delete reaches other web processes within this many seconds.
TEMPLATES: TtlCache[Any] = TtlCache(seconds=5)


def template_or_error(account: Account, code: str) -> Any:
    """The template, or the error to raise for it (cached too, so an unknown code costs no query)."""
    try:
        return template_get(account_id=account.id, code=code)
    except ServiceError as error:
        return error


def lane_for(template: Any, requested: str | None) -> str:
    if template.category == "verification":
        return "critical"
    return requested or template.effective_priority
