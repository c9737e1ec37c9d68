"""`GET /api/v1/stats`: delivery figures of the account's own messages, one SQL aggregation.

success = a provider accepted / attempted (handed to a provider at least once); receipt = messages
with a receipt / sent; delivery = delivered / sent; latency = provider accepted → delivered;
fill = verification codes checked valid / codes sent (null where no codes were sent)."""

from __future__ import annotations

from typing import Any

from django.db import connection

from apps.accounts.models import Account
from apps.dispatch.selectors import query_timestamp
from messaging_center import ids
from messaging_center.errors import ValidationFailed

GROUP_KEYS = {
    "provider": "m.provider",
    "channel": "m.channel",
    "template": "m.template_code",
    "day": "to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
COUNTS = ("total", "sent", "delivered", "undelivered", "failed", "expired", "suppressed", "rejected")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def stats_get(*, account: Account, params: dict[str, str]) -> list[dict[str, Any]]:
    group_by = params.get("group_by") or "day"
    if group_by not in GROUP_KEYS:
        choices = ", ".join(GROUP_KEYS)
        raise ValidationFailed(f"group_by must be one of {choices}.", errors={"group_by": [f"One of {choices}."]})
    where = ["m.account_id = %(account)s"]
    bounds: dict[str, Any] = {"account": account.id}
    # UUIDv7 ids are time-ordered: a creation-time range is an id range on the (account, id) index.
    if after := params.get("created_after"):
        where.append("m.id >= %(after)s")
        bounds["after"] = ids.uuid7_floor(query_timestamp("created_after", after))
    if before := params.get("created_before"):
        where.append("m.id < %(before)s")
        bounds["before"] = ids.uuid7_floor(query_timestamp("created_before", before))
    sql = f"""
        SELECT {GROUP_KEYS[group_by]} AS key,
               count(*),
               count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'undelivered')),
               count(*) FILTER (WHERE m.status = 'delivered'),
               count(*) FILTER (WHERE m.status = 'undelivered'),
               count(*) FILTER (WHERE m.status = 'failed'),
               count(*) FILTER (WHERE m.status = 'expired'),
               count(*) FILTER (WHERE m.status = 'suppressed'),
               count(*) FILTER (WHERE m.status = 'rejected'),
               count(*) FILTER (WHERE m.attempts > 0 AND m.status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired')),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM m.delivered_at - m.sent_at) * 1000)
                   FILTER (WHERE m.status = 'delivered'),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM m.delivered_at - m.sent_at) * 1000)
                   FILTER (WHERE m.status = 'delivered'),
               count(v.id),
               count(v.verified_at)
        FROM dispatch_message m LEFT JOIN receipts_verification v ON v.message_id = m.id
        WHERE {" AND ".join(where)}
        GROUP BY 1 ORDER BY 1
    """  # noqa: S608 - the interpolated parts are fixed expressions from GROUP_KEYS
    with connection.cursor() as cursor:
        cursor.execute(sql, bounds)
        rows = cursor.fetchall()
    groups = []
    for row in rows:
        counts = dict(zip(COUNTS, row[1:9], strict=True))
        attempted, p50, p95, codes, filled = row[9:]
        groups.append(
            {
                "key": row[0],
                **counts,
                "success_rate": _rate(counts["sent"], attempted),
                "receipt_rate": _rate(counts["delivered"] + counts["undelivered"], counts["sent"]),
                "delivery_rate": _rate(counts["delivered"], counts["sent"]),
                "latency_p50_ms": round(p50) if p50 is not None else None,
                "latency_p95_ms": round(p95) if p95 is not None else None,
                "fill_rate": _rate(filled, codes),
            }
        )
    return groups
