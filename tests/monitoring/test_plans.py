"""The dashboard's and the scrape-time gauges' statements, planned by PostgreSQL on the periodic-plans
history (~120,000 messages over 30 days, tests/test_periodic_plans.py): none reads a big table or a
rollup whole, the rollups are read through their primary key (account, grain, bucket), and each backlog
through the index made for its state."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.monitoring import backlogs, series
from tests.test_periodic_plans import BIG_TABLES, _empty_partitions, _index, _nodes, _parent_indexes, _plan, _summary, _table
from tests.test_periodic_plans import history as history  # the fixture

pytestmark = pytest.mark.django_db
ROLLUPS = {"dispatch_rollup", "dispatch_attempt_rollup"}


def _statements() -> list[tuple[str, str, dict[str, Any], set[str]]]:
    """(what, statement, parameters, the indexes its rows may come through)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(backlogs.ACCOUNT_IDS)
        accounts = cursor.fetchone()[0]
    found = []
    for name in ("1h", "24h"):
        window = series.window_for(name, now)
        for what, statement in (("volume", series.VOLUME), ("delivery", series.DELIVERY), ("accounts", series.ACCOUNTS)):
            found.append((f"{what} {name}", statement, window.params(), {"dispatch_rollup_pkey"}))
        for what, statement in (("calls", series.CALLS), ("errors", series.ERRORS)):
            found.append((f"{what} {name}", statement, window.params(limit=10), {"dispatch_attempt_rollup_pkey"}))
    cap = {"cap": backlogs.BACKLOG_COUNTED_UP_TO}
    return [
        *found,
        ("oldest queued", backlogs.OLDEST_QUEUED, {"lanes": ["critical", "high", "normal", "bulk"]}, {"msg_lease"}),
        ("scheduled", backlogs.SCHEDULED, cap, {"msg_due", "msg_account_status"}),
        ("retry_wait", backlogs.RETRY_WAIT, cap | {"accounts": accounts}, {"msg_account_status", "msg_lease"}),
        ("callbacks", backlogs.CALLBACKS, cap, {"callback_due"}),
    ]


# A day of calls per minute for the last 3 days and per hour for 35, three providers, two outcomes: the
# history's events record no call, and an empty table is rightly read whole.
CALLS = """
INSERT INTO dispatch_attempt_rollup (account_id, grain, bucket, channel, provider, segment, template_code, outcome, code,
    calls, latency_ms)
SELECT %(account)s, g.grain, g.bucket, 'sms', p.provider, 'CN-mobile', 'notice', o.outcome, '', 3, array_fill(0, ARRAY[32])
FROM (SELECT 'minute' AS grain,
             generate_series(date_trunc('minute', now()) - interval '3 days', now(), interval '1 minute') AS bucket
      UNION ALL
      SELECT 'hour', generate_series(date_trunc('hour', now()) - interval '35 days', now(), interval '1 hour')) g,
     unnest(ARRAY['test-aliyun', 'test-tencent', 'test-wecom']) AS p(provider),
     unnest(ARRAY['accepted', 'provider_error']) AS o(outcome);
ANALYZE dispatch_attempt_rollup;
"""


def test_every_dashboard_and_gauge_statement_reads_through_its_index(history: None, api: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(CALLS, {"account": api.account.id})
    failures = []
    parents = _parent_indexes()
    empty = _empty_partitions()
    for what, statement, params, indexes in _statements():
        plan = _plan(statement, params)
        reads = [node for node in _nodes(plan) if node.get("Relation Name") or node.get("Index Name")]
        whole = []
        for node in reads:
            table, index = _table(node), _index(node, parents)
            if node["Node Type"] == "Seq Scan" and table in BIG_TABLES | ROLLUPS and node["Relation Name"] not in empty:
                whole.append(f"Seq Scan on {node['Relation Name']}")
            # A partial index made for the state counted holds only those rows: reading it whole is the count.
            if (
                "Index Cond" not in node
                and node["Node Type"].startswith("Index")
                and table in BIG_TABLES
                and index not in indexes
            ):
                whole.append(f"whole index {index}")
        if whole:
            failures.append(f"{what}: reads whole {sorted(set(whole))} ({_summary(plan)[:6]})")
        if not {_index(node, parents) for node in reads} & indexes:
            failures.append(f"{what}: not through {sorted(indexes)} ({_summary(plan)[:6]})")
    assert not failures, "\n".join(failures)
