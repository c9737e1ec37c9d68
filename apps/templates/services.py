"""Template operations: create, change, soft-delete, render."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import Account
from apps.templates.models import MessageTemplate, Status
from apps.templates.rendering import PlaceholderError, compile_text, stringify
from messaging_center.errors import ValidationFailed
from messaging_center.vocabulary import Category, Channel

CODE_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z")
PROVIDER_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
WECHAT_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
IdFormat = tuple[re.Pattern[str], str]  # (pattern, how an id looks)
# The format of the approved template ids a provider kind issues: the providers know it (their
# adapters), and apps.dispatch registers the lookup when it starts (templates sit below dispatch).
_provider_id_formats: list[Callable[[str], IdFormat | None]] = []


def provider_id_format_register(lookup: Callable[[str], IdFormat | None]) -> None:
    _provider_id_formats[:] = [lookup]


def _provider_id_format(kind: str) -> IdFormat | None:
    return _provider_id_formats[0](kind) if _provider_id_formats else None


UNIQUE_CODE_CONSTRAINT = "template_code_unique_live"
EDITABLE_FIELDS = (
    "name",
    "channel",
    "category",
    "title",
    "content",
    "sms_signature",
    "priority",
    "ttl",
    "dedup_window",
    "frequency_limits",
    "provider_template_ids",
    "sample_params",
    "status",
)


@dataclass(frozen=True)
class Rendered:
    content: str
    title: str
    html: str | None  # the content with params HTML-escaped; e-mail templates only
    missing: list[str]  # variables without a value, in the template's order


def template_render(*, template: MessageTemplate, params: Mapping[str, object]) -> Rendered:
    """Substitutes params (None = not supplied); parsing is cached per text, so this is cheap per entry."""
    values = stringify(params)
    content = compile_text(template.content)
    title = compile_text(template.title)
    return Rendered(
        content=content.substitute(values),
        title=title.substitute(values),
        html=content.substitute(values, escape=True) if template.channel == Channel.EMAIL else None,
        missing=[name for name in template.variables if name not in values],
    )


def template_check(template: MessageTemplate) -> None:
    """Validates a template's cross-field rules and sets `variables`; raises ValidationFailed."""
    errors: dict[str, list[str]] = {}
    if not CODE_PATTERN.fullmatch(template.code):
        errors["code"] = ["Use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit; no spaces."]
    if not template.content.strip():
        errors["content"] = ["This field may not be blank."]
    # Content variables first, in order of first appearance (Tencent's positional order), then title-only ones.
    variables: list[str] = []
    for field, text in (("content", template.content), ("title", template.title)):
        try:
            names = compile_text(text).variables
        except PlaceholderError as exc:
            errors[field] = [str(exc)]
            continue
        if field == "content" and template.category == Category.VERIFICATION and "code" not in names:
            errors.setdefault("content", ["A verification template must contain {{code}}."])
        variables.extend(name for name in names if name not in variables)
    template.variables = variables
    signature = template.sms_signature.strip().removeprefix("【").removesuffix("】").strip()
    if any(char in signature for char in "【】[]"):
        errors["sms_signature"] = ["Give the signature without brackets, e.g. ACME; it is sent as 【ACME】."]
    template.sms_signature = signature
    errors.update(_provider_id_errors(template.provider_template_ids, template.variables))
    if errors:
        raise ValidationFailed(errors=errors)


def _provider_id_errors(provider_ids: Any, variables: list[str]) -> dict[str, list[str]]:
    if not isinstance(provider_ids, dict):
        return {"provider_template_ids": ['Expected an object like {"aliyun": "SMS_1234"}.']}
    errors: dict[str, list[str]] = {}
    for kind, value in provider_ids.items():
        field = f"provider_template_ids.{kind}"
        if not PROVIDER_KIND.fullmatch(str(kind)):
            errors[field] = ["Provider kinds are lower-case names like aliyun, tencent, wechat."]
        elif kind == "wechat" and isinstance(value, dict):
            errors.update(_wechat_mapping_errors(field, value, variables))
        elif not isinstance(value, str) or not value.strip() or len(value) > 128:
            errors[field] = ["Expected the provider's template id as a non-empty string of at most 128 characters."]
        elif (id_format := _provider_id_format(kind)) is not None and not id_format[0].fullmatch(value):
            errors[field] = [f"Expected {id_format[1]}."]
    return errors


def _wechat_mapping_errors(field: str, value: dict[str, Any], variables: list[str]) -> dict[str, list[str]]:
    """`{"template_id": "...", "fields": {"keyword1": "order_no", ...}}`: WeChat data keys → our variables."""
    errors: dict[str, list[str]] = {}
    template_id = value.get("template_id")
    if not isinstance(template_id, str) or not template_id.strip() or len(template_id) > 128:
        errors[f"{field}.template_id"] = ["Expected the WeChat template id as a non-empty string."]
    fields = value.get("fields", {})
    if not isinstance(fields, dict):
        return {**errors, f"{field}.fields": ['Expected an object like {"keyword1": "order_no"}.']}
    for key, variable in fields.items():
        if not WECHAT_FIELD.fullmatch(str(key)):
            errors[f"{field}.fields.{key}"] = ["Not a WeChat template field name."]
        elif variable not in variables:
            errors[f"{field}.fields.{key}"] = [f"{variable!r} is not a variable of this template."]
    unknown = set(value) - {"template_id", "fields"}
    if unknown:
        errors[field] = [f"Unknown keys: {', '.join(sorted(unknown))}."]
    return errors


def _save(template: MessageTemplate) -> MessageTemplate:
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError as exc:
        if UNIQUE_CODE_CONSTRAINT not in str(exc):
            raise
        raise ValidationFailed(
            f"A template with code {template.code!r} already exists.", errors={"code": ["Already exists."]}
        ) from None
    return template


def template_create(
    *, account: Account, code: str, name: str, channel: str, category: str, content: str, **fields: Any
) -> MessageTemplate:
    """Creates a template; `fields` are the optional EDITABLE_FIELDS. Duplicate live code → ValidationFailed."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"unknown template fields: {sorted(unknown)}")
    template = MessageTemplate(
        account=account, code=code, name=name, channel=channel, category=category, content=content, **fields
    )
    if template.provider_template_ids is None:
        template.provider_template_ids = {}
    template_check(template)
    return _save(template)


def template_update(*, template: MessageTemplate, **changes: Any) -> MessageTemplate:
    """Applies changes to EDITABLE_FIELDS and re-validates the whole template; the code never changes."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"unknown template fields: {sorted(unknown)}")
    for field, value in changes.items():
        setattr(template, field, value)
    template_check(template)
    return _save(template)


def template_delete(*, template: MessageTemplate) -> None:
    """Soft delete: the code answers 404 and is free again; messages keep pointing at this row."""
    template.deleted_at = timezone.now()
    template.status = Status.DISABLED
    template.save(update_fields=["deleted_at", "status", "updated_at"])
