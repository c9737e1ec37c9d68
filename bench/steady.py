"""Table sizes over steady-state days (#21: "table sizes stay flat across a steady-state bench cycle").

After the history scenario: each cycle is one more day of an installation in its steady state — a
day's messages (the history's daily volume, with their events and receipts) written as of the next
day, then the retention job run as of that day, as its hourly beat would. Once the days beyond
retention have left (the first cycle), each cycle adds a day and drops one: the big tables' sizes
stay flat, and the rest (rollups, verifications, idempotency keys) grow by no more than a day's rows
of their own. Times are the simulated days' (ids and created_at a day, two days … ahead of the
clock); the messages are final but for a share `sent` long ago for the periodic jobs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

from bench import seed
from bench.throughput import Stack, _sql

ALSO_MEASURED = ("dispatch_rollup", "receipts_verification")


@dataclasses.dataclass(frozen=True)
class DayPlan(seed.Plan):
    """One day of messages: the day before `now_ms`, in equal slices per chunk."""

    def window(self, index: int) -> tuple[int, int]:
        width = seed.DAY_MS / self.chunks
        start = self.now_ms - seed.DAY_MS
        return int(start + index * width), int(start + (index + 1) * width)


def tree(table: str) -> str:
    """A plain table, or a partitioned table's partitions (pg_partition_tree lists no plain table)."""
    return (
        f"(SELECT oid AS relid FROM pg_class WHERE oid = to_regclass('{table}') AND relkind = 'r' "  # noqa: S608 - our table names
        f"UNION ALL SELECT relid FROM pg_partition_tree(to_regclass('{table}')) WHERE isleaf)"
    )


def sizes(stack: Stack, tables: tuple[str, ...]) -> dict[str, int]:
    """Each table's size with its indexes and TOAST, its partitions summed."""
    found = {}
    for table in tables:
        [(size,)] = _sql(stack, f"SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM {tree(table)}")  # noqa: S608
        found[table] = int(size)  # type: ignore[call-overload]
    return found


def steady_cycles(stack: Stack, plan: seed.Plan, big_tables: tuple[str, ...], *, cycles: int, streams: int) -> None:
    from apps.dispatch.retention import run_retention  # Django is set up in this process (bench.history)

    tables = (*big_tables, *ALSO_MEASURED)
    per_day = max(1, round(plan.total * (1 - seed.BEYOND_SHARE) / seed.HISTORY_DAYS))
    print(f"\nSteady state: {cycles} days of {per_day:,} messages each, retention run after each day", flush=True)
    rows = [("start", sizes(stack, tables), 0.0, 0.0)]
    for day in range(1, cycles + 1):
        now = dt.datetime.now(dt.UTC) + dt.timedelta(days=day)
        fields = {field.name: getattr(plan, field.name) for field in dataclasses.fields(plan)}
        day_plan = DayPlan(**{**fields, "total": per_day, "now_ms": int(now.timestamp() * 1000), "seed": day})
        started = time.perf_counter()
        run_retention(now=now - dt.timedelta(days=1))  # the day's partitions exist before its messages come
        seed.seed(day_plan, streams)
        seeded = time.perf_counter() - started
        started = time.perf_counter()
        run_retention(now=now)
        _sql(stack, "VACUUM (ANALYZE)")  # what autovacuum does between days
        rows.append((f"day +{day}", sizes(stack, tables), seeded, time.perf_counter() - started))
    print(f"  {'after':<8} {'seed s':>7} {'retention s':>12}  " + " ".join(f"{t.split('_', 1)[1][:14]:>14}" for t in tables))
    for name, measured, seeded, kept in rows:
        print(f"  {name:<8} {seeded:>7.1f} {kept:>12.1f}  " + " ".join(f"{measured[t] / 2**20:>11,.1f} MiB" for t in tables))
    first, last = rows[1][1], rows[-1][1]
    big_first, big_last = sum(first[t] for t in big_tables), sum(last[t] for t in big_tables)
    ratio = big_last / big_first
    print(f"  big tables, day +1 → day +{cycles}: {big_first / 2**20:,.1f} → {big_last / 2**20:,.1f} MiB ({ratio:.2f} times)")
