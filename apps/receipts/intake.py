"""Providers' pushed status reports: which provider row vouches for a push (signature or secret URL
token), its parse, and storing it with the reports other threads hold at the same moment (group
commit: stored, matched and applied in one statement)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.db import transaction
from django.db.models import Q
from redis.exceptions import RedisError

from apps.dispatch.models import Provider
from apps.dispatch.providers import ADAPTERS, adapter_class
from apps.dispatch.providers.base import ProviderAdapter, Receipt
from apps.dispatch.spool import store as spool_store
from apps.receipts.matching import _receipt_rows, receipts_match_soon, receipts_store_and_apply
from messaging_center.errors import DATABASE_DOWN, Unavailable
from messaging_center.group_commit import GroupCommit
from messaging_center.ttl_cache import TtlCache

TOKEN_SETTING = "receipt_token"  # noqa: S105 - the name of a setting


@dataclass(frozen=True)
class ReceiptSource:
    provider: Provider
    adapter: ProviderAdapter


# Provider rows (with decrypted settings) per push URL: a status push costs no query or decryption
# for them. A provider saved in this process clears it (apps.dispatch.apps); others within 5 s.
SOURCES: TtlCache[list[tuple[Provider, dict[str, str]]]] = TtlCache(seconds=5)


def _candidates(provider_ref: str) -> list[tuple[Provider, dict[str, str]]]:
    rows = Provider.objects.filter(Q(name=provider_ref) | Q(kind=provider_ref)).order_by("-enabled", "id")
    return [(provider, provider.settings) for provider in rows if provider.kind in ADAPTERS]


def receipt_source_authenticate(
    *, provider_ref: str, token: str | None, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> ReceiptSource | None:
    """The provider row that sent this push, or None when no candidate vouches for it.

    `provider_ref` is a kind or a row name; several rows of one kind may exist (two Aliyun accounts),
    so each candidate's own token and signature check decides."""
    # Through a database outage the provider rows as this process last read them (see receipts_store_pushed).
    for provider, settings in SOURCES.get_or_load(provider_ref, lambda: _candidates(provider_ref), stale_on=DATABASE_DOWN):
        expected = settings.get(TOKEN_SETTING, "")
        if expected:
            if not token or not hmac.compare_digest(expected.encode(), token.encode()):
                continue
        elif not adapter_class(provider.kind).signed_receipts:
            continue  # an unsigned push to a provider without a token is never trusted
        adapter = adapter_class(provider.kind)(settings)
        if adapter.verify_receipt_signature(method=method, url=url, headers=headers, body=body):
            return ReceiptSource(provider, adapter)
    return None


def receipts_parse(*, source: ReceiptSource, url: str, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
    """The adapter's parse; raises ReceiptFormatError. Our id travels in Twilio's StatusCallback query."""
    receipts = source.adapter.parse_receipt(headers=headers, body=body)
    carried = dict(parse_qsl(urlsplit(url).query)).get("message_id")
    if carried:
        receipts = [
            r if r.message_id else Receipt(r.provider, r.provider_message_id, carried, r.to, r.status, r.code, r.detail, r.at)
            for r in receipts
        ]
    return receipts


def _store_pushed_group(pushes: Sequence[list[dict[str, Any]]]) -> list[int]:
    """The group commit's write: every waiting push's reports in one statement that stores and
    applies them, with the callbacks it owes, in one transaction; reports of messages not sent yet
    are queued for the receipts worker (their message may be `sent` by the time it looks)."""
    rows = [row for push in pushes for row in push]
    with transaction.atomic():
        unmatched, _ = receipts_store_and_apply(rows)
    receipts_match_soon(unmatched)
    return [len(push) for push in pushes]


PUSHED = GroupCommit(_store_pushed_group)


def receipts_store_pushed(*, provider: Provider, receipts: Sequence[Receipt]) -> int:
    """A pushed report: stored (committed) and applied when this returns, with the reports other
    threads of this process are storing at the same moment. Returns how many reports it carried."""
    rows = _receipt_rows(provider, receipts, "push")
    if not rows:
        return 0
    try:
        return PUSHED.submit(rows)
    except DATABASE_DOWN:
        # Through a database outage the reports wait in the spool (apps/dispatch/spool), stored by
        # `receipts_replay_spooled` when it is back: the provider is answered as usual and does not
        # give up on a report of a code that was sent from the spool meanwhile.
        try:
            spool_store.put_receipts(rows)
        except (spool_store.SpoolFull, RedisError):
            raise Unavailable("The database is unavailable and the reports cannot be spooled; push again.") from None
        return len(rows)


def receipts_replay_spooled(*, batch: int = 1000) -> int:
    """Reports spooled during a database outage, stored and applied as if pushed now (a report
    stored already is dropped by the unique constraints, so a repeated batch is harmless)."""
    rows = spool_store.receipts(batch)
    if rows:
        _store_pushed_group([rows])
        spool_store.drop_receipts(len(rows))
    return len(rows)
