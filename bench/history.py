"""`make bench` (`BENCH=history`), or `python -m bench.history [--history N]`: the same figures on the same
run, first on an empty database and then with N old messages (default 5,000,000: bench.seed), side by
side with their ratio and the targets of issue #21; then one retention cycle, and steady-state days
(bench.steady): table sizes as days come and go.

Each phase: accepted msg/s (batch 1,000, delivery paused), delivered SMS/s (the simulator sends
receipts), search and stats latency (medians of sequential calls), each periodic job's duration
(its task function called in this process against the same database), then a minute of the stack
idle: PostgreSQL's CPU and the rows its sequential scans read."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from bench import seed, steady
from bench.load import run_load
from bench.throughput import (
    DATA_DIR,
    WARM_UP_SECONDS,
    SendBodies,
    Stack,
    _api,
    _control,
    _drop_accept_backlog,
    _sql,
    _templates,
    bench_account,
    delivery_throughput,
    set_consumers,
    settle,
    start_stack,
    stop_stack,
)

SECONDS = 8.0
PERIODIC_TASKS = (
    "dispatch.relay_outbox",
    "dispatch.enqueue_due",
    "dispatch.sweep",
    "dispatch.purge_idempotency_keys",
    "receipts.poll",
    "receipts.rematch",
    "receipts.flag_timeouts",
    "receipts.failover_silent",
    "receipts.publish_due_callbacks",
)
BIG_TABLES = (
    "dispatch_message",
    "dispatch_messageevent",
    "receipts_providerreceipt",
    "receipts_statuscallback",
    "receipts_callbackattempt",
    "dispatch_idempotencyrecord",
)
LOOKUP_ADDRESS = "+8613700000123"  # one of the delivery scenario's numbers (bench.throughput)
SEARCHES = {
    "search by address (to)": f"/api/v1/messages?to={quote(LOOKUP_ADDRESS)}",
    "search by status (delivered)": "/api/v1/messages?status=delivered",
    "search by status (undelivered)": "/api/v1/messages?status=undelivered",
    "search q (rare Latin word)": "/api/v1/messages?q=zanzibar",
    "search q (rare Chinese word)": "/api/v1/messages?q=" + quote("麒麟"),
    "stats by provider": "/api/v1/stats?group_by=provider",
    "stats by day": "/api/v1/stats?group_by=day",
}
Figures = dict[str, float]


# --- Setup --------------------------------------------------------------------------------------------

HISTORY_TEMPLATES = {  # code: (category, content, weight); {w} is a rare word now and then
    "hist_order": ("transactional", "您的订单{o}已发货，请留意查收。Your order {o} has shipped.{w}", 5.0),  # noqa: RUF001 - Chinese punctuation, on purpose
    "hist_login": ("verification", "验证码{c}，5分钟内有效，请勿泄露。Your code is {c}.{w}", 3.0),  # noqa: RUF001 - Chinese punctuation, on purpose
    "hist_bill": ("transactional", "尊敬的{n}，您本月账单已出，请按时还款。Your bill {o} is ready.{w}", 1.0),  # noqa: RUF001 - Chinese punctuation, on purpose
    "hist_promo": ("marketing", "{n}，618大促全场5折起，回T退订。Summer sale: 50% off this weekend!{w}", 1.0),  # noqa: RUF001 - Chinese punctuation, on purpose
}
OTHER_CHANNELS = {
    "wechat": ("hist_wechat_notice", "订单{o}状态更新{w}", 0.3),
    "email": ("hist_email_receipt", "Receipt {o}{w}", 0.2),
}
OTHER_ACCOUNTS = (("hist-shop", 0.1), ("hist-bank", 0.06), ("hist-game", 0.04))


def _sms_templates(stack: Stack, key: str) -> None:
    common = {"channel": "sms", "sms_signature": "ACME"}
    for code, (category, content, _) in HISTORY_TEMPLATES.items():
        body = {"code": code, "name": code, "category": category, "content": content.replace("{w}", "")}
        body["content"] = body["content"].replace("{o}", "{{order_no}}").replace("{c}", "{{code}}").replace("{n}", "{{name}}")
        _api(stack, "POST", "/api/v1/templates", key, {**common, **body})


def _plan(stack: Stack, total: int) -> seed.Plan:
    """The seeding plan from the stack's own accounts, templates and providers: 80 % of the history is
    the bench account's (the one both phases query), the rest three other accounts'."""
    _control(stack)  # Django set up in this process, on the stack's database
    from apps.accounts.models import Account
    from apps.dispatch.providers import adapter_class
    from apps.templates.models import MessageTemplate

    providers: dict[str, list[seed.Provider]] = {}
    for name, kind, channel in _sql(
        stack,
        "SELECT name, kind, channel FROM dispatch_provider WHERE enabled AND priority_group = "
        "(SELECT min(priority_group) FROM dispatch_provider p WHERE p.channel = dispatch_provider.channel AND p.enabled) "
        "ORDER BY name",
    ):
        source = "poll" if adapter_class(str(kind)).polls_receipts() else "push"
        providers.setdefault(str(channel), []).append(seed.Provider(str(name), str(kind), source))
    senders = []
    for name, share in (("bench", 0.8), *OTHER_ACCOUNTS):
        account = Account.objects.get(name=name)
        ids = dict(MessageTemplate.objects.filter(account=account).values_list("code", "id"))
        templates = [
            seed.Template(str(ids[code]), code, "sms", category, content, weight)
            for code, (category, content, weight) in HISTORY_TEMPLATES.items()
        ]
        templates += [
            seed.Template(None, code, channel, "transactional", content, weight)
            for channel, (code, content, weight) in OTHER_CHANNELS.items()
            if channel in providers
        ]
        senders.append(seed.Sender(str(account.id), share, tuple(templates)))
    [(now,)] = _sql(stack, "SELECT now()")
    now_ms = int(now.timestamp() * 1000)  # type: ignore[attr-defined]
    import psycopg

    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        extra = seed.extra_columns(conn, str(now))
    return seed.Plan(
        stack.env["DATABASE_URL"],
        total,
        now_ms,
        tuple(senders),
        {channel: tuple(found) for channel, found in providers.items()},
        extra,
        LOOKUP_ADDRESS,
    )


# --- Measuring -----------------------------------------------------------------------------------------


def _timed_gets(stack: Stack, key: str, path: str, calls: int = 30, budget: float = 20.0) -> tuple[float, int]:
    """Median latency (ms) of sequential GETs on one keep-alive connection: `calls` of them, fewer
    (at least 3) when they would take longer than `budget` seconds."""
    host, port = stack.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"Authorization": f"Bearer {key}"}
    times: list[float] = []
    started = time.perf_counter()
    try:
        for _ in range(calls):
            before = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:  # a statement timeout, say: the figure is missing, the run goes on
                print(f"  GET {path} → {response.status}: {body[:300]!r}", flush=True)
                return float("nan"), len(times)
            times.append((time.perf_counter() - before) * 1000)
            if len(times) >= 3 and time.perf_counter() - started > budget:
                break
    finally:
        conn.close()
    return statistics.median(times), len(times)


def _periodic(stack: Stack, runs: int = 5) -> dict[str, tuple[float, float]]:
    """(median, max) ms of each beat task's function, called in this process (after one call not
    counted: it opens the connection)."""
    _control(stack)
    from celery_app import app

    durations = {}
    for name in PERIODIC_TASKS:
        importlib.import_module(f"apps.{name.split('.')[0]}.tasks")  # registers its tasks (autodiscovery is lazy)
        task = app.tasks[name]
        task.run()
        times = []
        for _ in range(runs):
            before = time.perf_counter()
            task.run()
            times.append((time.perf_counter() - before) * 1000)
        durations[name] = (statistics.median(times), max(times))
    from django.db import connection

    connection.close()  # not an idle session beside the idle measurement
    return durations


def _postgres_cpu_seconds() -> float:
    """CPU seconds of the postmaster and every server process: the live ones', plus those of ended
    ones that the postmaster has reaped (its children_* times)."""
    import psutil

    postmaster = psutil.Process(int((DATA_DIR / "postgres/pgdata/postmaster.pid").read_text().splitlines()[0]))
    own = postmaster.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in postmaster.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def _seq_tup_read() -> str:
    """Rows read by sequential scans, live rows, and index pages touched (whole-index scans show
    there) of the messages table and its partitions."""
    return (
        "SELECT coalesce(sum(t.seq_tup_read), 0), coalesce(sum(t.n_live_tup), 0), "  # noqa: S608
        "coalesce(sum(coalesce(io.idx_blks_hit, 0) + coalesce(io.idx_blks_read, 0)), 0) "
        "FROM pg_stat_user_tables t JOIN pg_statio_user_tables io USING (relid) "
        f"WHERE relid IN {steady.tree('dispatch_message')}"
    )


def idle(stack: Stack, seconds: float) -> tuple[float, float, int, float]:
    """The stack left alone for `seconds` (its beat keeps running): PostgreSQL's CPU seconds per
    minute, the rows sequential scans read from the messages table as a % of its rows per minute, its
    rows, and the pages of its indexes that scans touched per minute."""
    # Not count(*): a scan of its own, whose statistics an idle backend may flush up to 10 s later,
    # inside the window. What came before settles and is flushed meanwhile.
    time.sleep(11)
    _sql(stack, "SELECT pg_stat_clear_snapshot()")
    [(read_before, rows, pages_before)] = _sql(stack, _seq_tup_read())
    cpu_before, started = _postgres_cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    cpu, elapsed = _postgres_cpu_seconds() - cpu_before, time.perf_counter() - started
    # Read as the first one was: both see what backends had flushed by then (each about as late).
    _sql(stack, "SELECT pg_stat_clear_snapshot()")
    [(read_after, _, pages_after)] = _sql(stack, _seq_tup_read())
    per_minute = 60 / elapsed
    read = (int(read_after) - int(read_before)) * per_minute  # type: ignore[call-overload]
    pages = (int(pages_after) - int(pages_before)) * per_minute  # type: ignore[call-overload]
    return cpu * per_minute, 100 * read / max(int(rows), 1), int(rows), pages  # type: ignore[call-overload]


def measure(stack: Stack, key: str, phase: str, args: argparse.Namespace) -> Figures:
    """Accept and delivery first; the accepted messages leave again, the delivered ones stay (the
    empty phase's lookups then find some recent messages, as on a new installation in use). Then
    lookups, periodic jobs, the idle minute and the tables' sizes."""
    figures: Figures = {}
    print(f"[{phase}] accept: batch 1,000, 4 connections, {SECONDS:.0f} s (delivery paused) …", flush=True)
    set_consumers(stack, on=False)
    url = f"{stack.base_url}/api/v1/messages"
    run_load(url, method="POST", make_body=SendBodies(1000, key, tag="warm"), connections=4, seconds=WARM_UP_SECONDS)
    accept = run_load(url, method="POST", make_body=SendBodies(1000, key, tag=phase[0]), connections=4, seconds=SECONDS)
    figures["accepted msg/s (batch 1,000)"] = accept.rate * 1000
    print(f"  {accept.rate * 1000:,.0f} msg/s, errors {accept.errors}, statuses {accept.statuses}", flush=True)
    _sql(
        stack,
        "DELETE FROM dispatch_message m USING accounts_account a "
        "WHERE a.id = m.account_id AND a.name = 'bench' AND m.template_code = 'bench_notice'",
    )
    _drop_accept_backlog(stack)
    print(f"[{phase}] delivery: {args.delivery:,} SMS, 20 ms provider latency, receipts on …", flush=True)
    template = f"bench_delivery_{phase}"
    figures["delivered SMS/s"], _ = delivery_throughput(stack, key, args.delivery, template=template)
    print(f"  {figures['delivered SMS/s']:,.0f}/s; receipts applied {settle(stack, template):.1f} s after", flush=True)

    for name, path in SEARCHES.items():
        median, calls = _timed_gets(stack, key, path)
        figures[f"{name} (ms)"] = median
        print(f"[{phase}] {name}: median {median:,.1f} ms over {calls} calls", flush=True)
    print(f"[{phase}] periodic jobs, {len(PERIODIC_TASKS)} tasks x 5 runs in this process …", flush=True)
    for name, (median, longest) in _periodic(stack).items():
        figures[f"{name} median (ms)"] = median
        print(f"  {name:<34} median {median:8.1f} ms  max {longest:8.1f} ms", flush=True)
    print(f"[{phase}] idle for {args.idle:.0f} s …", flush=True)
    cpu, scanned, rows, pages = idle(stack, args.idle)
    figures["database CPU while idle (s/min)"] = cpu
    figures["idle seq-scan reads (% of messages/min)"] = scanned
    figures["idle message-index pages touched (k/min)"] = pages / 1000
    print(
        f"  PostgreSQL {cpu:.2f} CPU s/min; seq scans read {scanned:.2f} % of {rows:,} messages per minute; "
        f"{pages:,.0f} pages of its indexes touched per minute",
        flush=True,
    )
    for table, size in steady.sizes(stack, BIG_TABLES).items():
        figures[f"size {table} (MiB)"] = size / 2**20
    return figures


# --- Report ---------------------------------------------------------------------------------------------


def _target(name: str) -> tuple[str, Callable[[float, float, float], bool]] | None:
    if name.startswith(("accepted", "delivered")):
        return "≥ 0.9x", lambda _e, _h, ratio: ratio >= 0.9
    if name.startswith("search q"):
        return "≤ 3x", lambda _e, _h, ratio: ratio <= 3
    if name.startswith(("search", "stats")) or " median " in name:
        return "≤ 1.5x", lambda _e, _h, ratio: ratio <= 1.5
    if name.startswith("idle seq-scan"):
        return "< 1 %", lambda _e, history, _r: history < 1
    return None


NOISE_MS = 1.0


def report(empty: Figures, history: Figures, total: int) -> None:
    print(f"\nHistory scenario: the same run, empty database vs {total:,} old messages")
    print(f"  {'figure':<48} {'empty':>11} {'with history':>13} {'ratio':>8}  target")
    verdicts = []
    for name, before in empty.items():
        after = history[name]
        ratio = after / before if before else float("inf") if after else 1.0
        target = _target(name)
        verdict = ""
        if target:
            met = target[1](before, after, ratio)
            close = not met and name.endswith("(ms)") and after - before < NOISE_MS
            verdicts.append(met or close)
            verdict = f"{target[0]:<7} {'pass' if met else 'pass*' if close else 'FAIL'}"
        print(f"  {name:<48} {before:>11,.1f} {after:>13,.1f} {ratio:>7.2f}x  {verdict}")
    print(f"  targets met: {sum(verdicts)} of {len(verdicts)}")
    print(f"  (pass*: over the ratio, but less than {NOISE_MS:.0f} ms slower: below what one run resolves)")


def retention_cycle(stack: Stack) -> None:
    try:
        module = importlib.import_module("apps.dispatch.retention")
    except ModuleNotFoundError:
        print("\nRetention: no apps.dispatch.retention in this tree; the retention cycle is skipped.")
        return
    run: Callable[[], Any] | None = getattr(module, "run_retention", None)
    if run is None:
        print("\nRetention: apps.dispatch.retention has no run_retention(); the retention cycle is skipped.")
        return
    before = steady.sizes(stack, BIG_TABLES)
    [(oldest,)] = _sql(stack, "SELECT min(created_at) FROM dispatch_message")
    started = time.perf_counter()
    try:
        result = run()
    except Exception as error:  # the scenario's figures are printed already; report and go on
        print(f"\nRetention: run_retention() failed: {error!r}")
        return
    took = time.perf_counter() - started
    after = steady.sizes(stack, BIG_TABLES)
    [(left,)] = _sql(stack, "SELECT min(created_at) FROM dispatch_message")
    print(f"\nRetention: one run_retention() took {took:.1f} s and returned {result!r}")
    print("  (a tenth of the history was seeded 31-35 days back, beyond the default 30-day retention)")
    print(f"  oldest message before {oldest}, after {left}")
    print(f"  {'table':<30} {'before (MiB)':>14} {'after (MiB)':>13}")
    for table, size in before.items():
        print(f"  {table:<30} {size / 2**20:>14,.1f} {after[table] / 2**20:>13,.1f}")


def _make_partitions() -> None:
    """The partitions of the days the history goes back to (a new installation has only yesterday's,
    today's and the next days'); Django is set up in this process on the stack's database."""
    from django.db import connection
    from django.utils import timezone

    from messaging_center import partitions

    now = timezone.now()
    with connection.cursor() as wrapper:
        made = partitions.ensure_partitions(wrapper.cursor, now=now, first_day=now - dt.timedelta(days=seed.BEYOND_DAYS[1] + 1))
    print(f"  made {len(made)} partitions for the history's days", flush=True)


def _layout_notes(stack: Stack) -> None:
    """What the reader of the figures should know about the schema the history went into."""
    for table, kind in _sql(stack, "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)", (list(seed.TABLES),)):
        if kind == "p":
            [(parts,)] = _sql(stack, f"SELECT count(*) FROM {steady.tree(str(table))}")  # noqa: S608 - our table names
            print(f"  ({table} is partitioned: the history went into {parts} partitions)")
    rollups = [
        str(name)
        for (name,) in _sql(stack, "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relname LIKE '%%rollup%%'")
    ]
    for name in rollups:
        [(count,)] = _sql(stack, f"SELECT count(*) FROM {name}")  # noqa: S608 - a table name from pg_class
        print(f"  ({name}: {count:,} rows, kept by the triggers as the history was copied in)")


# --- The run --------------------------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=5_000_000, help="old messages to seed (default 5,000,000)")
    parser.add_argument("--streams", type=int, default=3, help="parallel COPY streams while seeding (default 3)")
    parser.add_argument("--delivery", type=int, default=30_000, help="SMS in each delivery measurement (default 30,000)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement (default 60)")
    parser.add_argument("--steady-days", type=int, default=5, help="steady-state days after the history (default 5)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    run_started = time.perf_counter()
    print(f"Starting the stack under {DATA_DIR} …", flush=True)
    stack = start_stack()
    try:
        keys = {name: bench_account(stack, name) for name, _ in (("bench", 1.0), *OTHER_ACCOUNTS)}
        key = keys["bench"]
        _templates(stack, key)
        delivery = {"category": "transactional", "channel": "sms", "content": "Your order {{order_no}} has shipped."}
        ids = {"aliyun": "SMS_100", "tencent": "1001", "volcengine": "ST_00000100"}
        for code in ("bench_delivery_warm", "bench_delivery_empty", "bench_delivery_history"):
            body = {"code": code, "name": code, "sms_signature": "ACME", "provider_template_ids": ids, **delivery}
            _api(stack, "POST", "/api/v1/templates", key, body)
        for account_key in keys.values():
            _sms_templates(stack, account_key)
        # Both phases with the partitions of the history's days: an installation has one per day of its
        # retention whatever its volume, so the ratios isolate what the messages cost.
        _control(stack)
        _make_partitions()
        print("Warm-up (not counted): 5,000 SMS delivered …", flush=True)
        delivery_throughput(stack, key, 5000, template="bench_delivery_warm")
        settle(stack, "bench_delivery_warm")
        empty = measure(stack, key, "empty", args)

        plan = _plan(stack, args.history)
        print(
            f"\nSeeding {args.history:,} old messages ({plan.chunk:,} a chunk, {args.streams} COPY streams; "
            f"{seed.BEYOND_SHARE:.0%} of them {seed.BEYOND_DAYS[0]}-{seed.BEYOND_DAYS[1]} days back, the rest over "
            f"the last {seed.HISTORY_DAYS} days) …",
            flush=True,
        )
        (messages, events, receipts), took = seed.seed(plan, args.streams)
        print(
            f"  seeded {messages:,} messages, {events:,} events, {receipts:,} receipts in {took:.0f} s: "
            f"{messages / took:,.0f} messages/s ({(messages + events + receipts) / took:,.0f} rows/s)",
            flush=True,
        )
        started = time.perf_counter()
        _sql(stack, "VACUUM (ANALYZE)")  # what autovacuum would do first: hint bits, visibility map, statistics
        _sql(stack, "CHECKPOINT")
        print(f"  VACUUM (ANALYZE) and CHECKPOINT: {time.perf_counter() - started:.0f} s", flush=True)
        _layout_notes(stack)
        print(flush=True)

        history = measure(stack, key, "history", args)
        report(empty, history, args.history)
        retention_cycle(stack)
        steady.steady_cycles(stack, plan, BIG_TABLES, cycles=args.steady_days, streams=args.streams)
        print(f"\nWhole run: {(time.perf_counter() - run_started) / 60:.1f} min (seeding {took / 60:.1f} min)")
    finally:
        stop_stack(stack)


if __name__ == "__main__":
    main()
