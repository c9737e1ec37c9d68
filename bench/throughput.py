"""`make bench` (`BENCH=throughput`): starts the real stack (the launcher, as `make run` does) on a scratch
data folder and prints, from one run, the accept path's figures beside the same run's baselines."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import LoadResult, run_load
from devstack.background import DidNotStart, launch

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data" / "bench"
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
WARM_UP_SECONDS = 2.0


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    base_url: str

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=True, capture_output=True, text=True
        ).stdout


def start_stack(extra_env: dict[str, str] | None = None) -> Stack:
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    DATA_DIR.mkdir(parents=True)
    try:
        run = launch(DATA_DIR, DATA_DIR / "launcher.log", {"LOG_LEVEL": "WARNING", **(extra_env or {})})
    except DidNotStart as error:
        raise SystemExit(str(error)) from None
    # MC_DEV_RUN: the bench's own manage.py commands and Django set-up use the stack's embedded servers
    # and keys (with DATABASE_URL and REDIS_URL set, settings would otherwise take them for production).
    stack_env = run.env | {"MC_DEV_RUN": "1"} | dict(line.split("=", 1) for line in _embedded_urls(run.env))
    return Stack(run.process, stack_env, f"http://127.0.0.1:{run.ports['PORT']}")


def _embedded_urls(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "devstack.embedded", "start"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if "=" in line]


def stop_stack(stack: Stack) -> None:
    for conn in _probe_connections.values():
        with contextlib.suppress(Exception):
            conn.close()  # type: ignore[attr-defined]
    os.killpg(stack.process.pid, signal.SIGTERM)
    stack.process.wait(60)


def _api(stack: Stack, method: str, path: str, key: str, body: object) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - our own loopback URL
        f"{stack.base_url}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own loopback URL
        return json.load(response)


class SendBodies:
    """Send requests with distinct phone numbers (so dedup and frequency checks pass) and a fresh
    Idempotency-Key each, so that every check of the accept path runs. Each connection has its own
    range of numbers, and the run its own nonce in the content (a rerun on the same stack is not
    deduplicated against the previous one)."""

    def __init__(self, batch: int, key: str, tag: str = "") -> None:
        self.batch = batch
        self.auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.nonce = f"{tag}{time.time_ns() // 1000 % 10**9:09d}"

    def __call__(self, slot: int, sequence: int) -> tuple[bytes, dict[str, str]]:
        # slot = client process * 1000 + connection (bench.load); up to 50 connections per process.
        connection = slot // 1000 * 50 + slot % 1000
        base = connection * 10**7 + sequence * self.batch
        to = [{"phone": f"+8613{base + i:09d}"} for i in range(self.batch)]
        body = {"template": "bench_notice", "to": to, "params": {"order_no": f"{self.nonce}-{sequence}"}}
        key = f"bench-{self.nonce}-{slot}-{sequence}-{self.batch}"
        return json.dumps(body).encode(), {**self.auth, "Idempotency-Key": key}


def copy_baseline(stack: Stack, rows_total: int = 50_000) -> float:
    """Raw COPY rows/s of rows shaped like the accept path's, into a copy of the message table."""
    import datetime as dt
    import uuid

    import psycopg

    url = stack.env["DATABASE_URL"]
    now = dt.datetime.now(dt.UTC)
    account = uuid.uuid4()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE bench_message (LIKE dispatch_message INCLUDING DEFAULTS INCLUDING INDEXES)")
        columns = (
            "id, account_id, batch_id, template_id, template_code, channel, category, priority, address, user_id, params, "
            "title, content, segments, status, code, detail, provider, provider_message_id, attempts, lease_until, "
            "created_at, scheduled_at, expires_at"
        )
        blocks = []
        for start in range(0, rows_total, 1000):
            batch = uuid.uuid4()
            lines = [
                "\t".join(
                    (
                        str(uuid.uuid4()),
                        str(account),
                        str(batch),
                        "\\N",
                        "bench_notice",
                        "sms",
                        "transactional",
                        "high",
                        f"+8613{i:09d}",
                        "",
                        json.dumps({"order_no": str(i)}),
                        "",
                        f"Your order {i} has shipped.",
                        "1",
                        "queued",
                        "",
                        "",
                        "",
                        "",
                        "0",
                        now.isoformat(),
                        now.isoformat(),
                        "\\N",
                        (now + dt.timedelta(hours=1)).isoformat(),
                    )
                )
                for i in range(start, start + 1000)
            ]
            blocks.append("\n".join(lines) + "\n")
        started = time.perf_counter()
        for block in blocks:  # timed: only the database's side, one COPY per 1,000 rows
            with conn.transaction(), conn.cursor().copy(f"COPY bench_message ({columns}) FROM STDIN") as copy:
                copy.write(block)
        return rows_total / (time.perf_counter() - started)


def _line(name: str, result: LoadResult, per_request: int) -> str:
    return (
        f"  {name:<34} {result.rate * per_request:>10,.0f} msg/s  {result.rate:>8,.0f} req/s  "
        f"p50 {result.p50:>7.1f} ms  p99 {result.percentile(99):>7.1f} ms  errors {result.errors}  statuses {result.statuses}"
    )


DISPATCH_QUEUES = ("mc.critical", "mc.high", "mc.normal", "mc.bulk")
# Which worker of the launcher consumes which lanes (devstack/launcher.py).
LANE_WORKERS = {"critical": ("mc.critical",), "high": ("mc.high",), "bulk": ("mc.normal", "mc.bulk")}


def set_consumers(stack: Stack, *, on: bool) -> None:
    """Pauses (or resumes) delivery, so that the accept figures measure accepting alone. Each worker
    gets back only its own lanes: a broadcast add_consumer would let the critical worker take bulk
    chunks (and the bulk worker verification codes), which is exactly what lanes exist to prevent."""
    import socket

    control = _control(stack)
    for worker, queues in LANE_WORKERS.items():
        node = f"{worker}@{socket.gethostname()}"
        for queue in queues:
            if on:
                replies = control.add_consumer(queue, destination=[node], reply=True, timeout=10)
            else:
                replies = control.cancel_consumer(queue, destination=[node], reply=True, timeout=10)
            if not replies:
                raise SystemExit(f"{node} did not answer {'add' if on else 'cancel'}_consumer {queue}")


_controls: dict[str, Any] = {}


def _control(stack: Stack) -> Any:
    """The stack's Celery app in this process, for its remote control commands. Not a `celery
    control` subprocess per command: each spent about 1.5 s of CPU starting Django and Celery, and
    resuming delivery (four of them, one after the other) happened inside the window the delivery
    figure is timed over: seconds of nothing consumed, and a core's worth of CPU taken from the
    stack while it delivered."""
    if not _controls:
        os.environ.update(stack.env)  # the stack's broker; this process has no other use for Django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_center.settings")
        import django

        django.setup()
        from celery_app import app

        _controls["app"] = app.control
    return _controls["app"]


_probe_connections: dict[str, object] = {}


def _sql(stack: Stack, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """One statement on the bench's own connection (kept: a new connection per probe would fork a
    PostgreSQL backend twice a second beside the system being measured)."""
    import psycopg

    url = stack.env["DATABASE_URL"]
    conn = _probe_connections.get(url)
    if conn is None or conn.closed:  # type: ignore[attr-defined]
        conn = _probe_connections[url] = psycopg.connect(url, autocommit=True)
    cursor = conn.execute(query, params)  # type: ignore[attr-defined]
    return cursor.fetchall() if cursor.description else []


def _sim(stack: Stack, path: str, body: object) -> None:
    sim_port = stack.env["SIM_PORT"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{sim_port}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - our own loopback URL


class MemorySampler:
    """Peak memory of every process of the stack (launcher tree, PostgreSQL, Redis), as the sum of
    proportional set sizes: plain RSS would count PostgreSQL's shared buffers once per backend."""

    def __init__(self, stack: Stack) -> None:
        import threading

        self.stack = stack
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list[object]:
        import psutil

        root = psutil.Process(self.stack.process.pid)
        found = [root, *root.children(recursive=True)]
        for pid_file in ("postgres/pgdata/postmaster.pid", "redis/redis.pid"):
            server = psutil.Process(int((DATA_DIR / pid_file).read_text().splitlines()[0]))
            found += [server, *server.children(recursive=True)]
        return found

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            total = 0
            for process in self._processes():
                with contextlib.suppress(psutil.Error):
                    total += process.memory_full_info().pss  # type: ignore[attr-defined]
            self.peak = max(self.peak, total)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _post_batch(stack: Stack, key: str, template: str, phones: list[str], **extra: object) -> None:
    _api(
        stack,
        "POST",
        "/api/v1/messages",
        key,
        {"template": template, "to": [{"phone": p} for p in phones], "params": {"order_no": "1", "code": "123456"}, **extra},
    )


# The probes below are cheap on purpose (an index, an EXISTS): counting a growing table every half
# second took a sizeable share of the database's CPU from the system being measured.
IN_FLIGHT = "SELECT EXISTS (SELECT 1 FROM dispatch_message WHERE lease_until IS NOT NULL AND template_code = %s)"


def delivery_throughput(stack: Stack, key: str, total: int = 50_000, template: str = "bench_delivery") -> tuple[float, float]:
    """Accept `total` SMS (delivery paused), then resume delivery; the time is from the resume to the
    last `sent_at` (the database's clock on both ends)."""
    _sim(stack, "/_sim/behavior", {"provider": "*", "latency_ms": 20, "fail_rate": 0.0})
    set_consumers(stack, on=False)
    base = 700_000_000
    for start in range(0, total, 1000):
        _post_batch(stack, key, template, [f"+8613{base + i:09d}" for i in range(start, start + 1000)])
    [(started_at,)] = _sql(stack, "SELECT now()")
    started = time.perf_counter()
    set_consumers(stack, on=True)
    while time.perf_counter() - started < 180:
        [(in_flight,)] = _sql(stack, IN_FLIGHT, (template,))
        if not in_flight:
            break
        time.sleep(0.5)
    [(sent, last)] = _sql(
        stack,
        "SELECT count(*), max(sent_at) FROM dispatch_message WHERE template_code = %s AND sent_at IS NOT NULL",
        (template,),
    )
    elapsed = (last - started_at).total_seconds() if last else time.perf_counter() - started  # type: ignore[operator]
    split = _sql(
        stack,
        "SELECT provider, count(*) FROM dispatch_message WHERE template_code = %s AND sent_at IS NOT NULL "
        "GROUP BY provider ORDER BY provider",
        (template,),
    )
    # Which provider APIs did the work (the default routing: mainland numbers through the domestic ones).
    print("  (sent through " + ", ".join(f"{name} {count:,}" for name, count in split) + ")")  # type: ignore[str-format]
    return int(sent) / elapsed, elapsed  # type: ignore[call-overload]


def settle(stack: Stack, template_code: str, limit_seconds: float = 120) -> float:
    """Waits until the scenario's messages have their receipts applied (none left `sent`), so that
    the next scenario is not measured beside the previous one's receipts. Returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_seconds:
        [(waiting,)] = _sql(
            stack,
            "SELECT EXISTS (SELECT 1 FROM dispatch_message m JOIN accounts_account a ON a.id = m.account_id "
            "WHERE a.name = 'bench' AND m.status = 'sent' AND m.template_code = %s)",
            (template_code,),
        )
        if not waiting:
            break
        time.sleep(0.5)
    return time.perf_counter() - started


SENT_PROBES = (
    "SELECT count(*) FROM dispatch_message m JOIN accounts_account a ON a.id = m.account_id "
    "WHERE a.name = 'bench' AND m.template_code = 'bench_login' AND m.sent_at IS NOT NULL"
)


def critical_under_backlog(stack: Stack, key: str, backlog: int = 100_000, probes: int = 100) -> tuple[float, float, int]:
    """Verification codes sent while a bulk backlog drains: accept → sent latency (p50, p99 ms)."""
    set_consumers(stack, on=False)
    base = 800_000_000
    for start in range(0, backlog, 1000):
        _post_batch(stack, key, "bench_delivery", [f"+8613{base + i:09d}" for i in range(start, start + 1000)], priority="bulk")
    set_consumers(stack, on=True)
    time.sleep(2)  # the bulk lane is busy now
    for i in range(probes):
        _post_batch(stack, key, "bench_login", [f"+8613{900_000_000 + i:09d}"])
        time.sleep(0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        [(done,)] = _sql(stack, SENT_PROBES)
        if done >= probes:
            break
        time.sleep(0.5)
    rows = _sql(
        stack,
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), count(*) "
        "FROM (SELECT extract(epoch FROM sent_at - created_at) * 1000 AS ms FROM dispatch_message "
        "WHERE template_code = 'bench_login' AND sent_at IS NOT NULL) t",
    )
    p50, p99, count = rows[0]
    [(left,)] = _sql(
        stack,
        "SELECT count(*) FROM dispatch_message WHERE template_code = 'bench_delivery' AND priority = 'bulk' AND sent_at IS NULL",
    )
    print(f"  (bulk messages still undelivered when the probes finished: {left:,})")
    return float(p50 or 0), float(p99 or 0), int(count)  # type: ignore[arg-type]


def bench_account(stack: Stack, name: str = "bench") -> str:
    """An account without practical rate or quota limits; its API key."""
    out = stack.manage("create_account", name, "--rate-limit", "1000000", "--daily-quota", "2000000000")
    return out.strip().splitlines()[-1]


def _templates(stack: Stack, key: str) -> None:
    common = {"channel": "sms", "content": "Your order {{order_no}} has shipped.", "sms_signature": "ACME"}
    for code, fields in (
        # Every accept-path check on: dedup window and frequency limits, on top of quota and idempotency.
        (
            "bench_notice",
            {"category": "transactional", "dedup_window": 3600, "frequency_limits": [{"limit": 100, "window": 86400}]},
        ),
        (
            "bench_delivery",
            {
                "category": "transactional",
                "provider_template_ids": {"aliyun": "SMS_100", "tencent": "1001", "volcengine": "ST_00000100"},
            },
        ),
        (
            "bench_login",
            {
                "category": "verification",
                "content": "Your code is {{code}}.",
                "provider_template_ids": {"aliyun": "SMS_101", "tencent": "1002", "volcengine": "ST_00000101"},
            },
        ),
    ):
        _api(stack, "POST", "/api/v1/templates", key, {"code": code, "name": code, **common, **fields})


def _drop_accept_backlog(stack: Stack) -> None:
    """The accept scenarios' messages would otherwise be delivered during the delivery scenarios."""
    _sql(stack, "DELETE FROM dispatch_outbox")
    _sql(stack, "UPDATE dispatch_message SET status = 'canceled', lease_until = NULL WHERE template_code = 'bench_notice'")
    # Those hundreds of thousands of updated rows would otherwise be vacuumed by autovacuum in the
    # middle of the delivery scenario.
    _sql(stack, "VACUUM (ANALYZE) dispatch_message")
    for queue in DISPATCH_QUEUES:
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "celery_app", "purge", "-f", "-Q", queue],
            cwd=BASE_DIR,
            env=stack.env,
            check=True,
            capture_output=True,
        )


def main() -> None:
    print(f"Starting the stack under {DATA_DIR} …", flush=True)
    stack = start_stack()
    try:
        key = bench_account(stack)
        _templates(stack, key)
        print(
            f"Load: {SECONDS:.0f} s per scenario, 2 client processes on the same 2 cores. Accept figures are taken with delivery"
        )
        print("paused (consumers cancelled), so that they measure accepting alone.\n", flush=True)
        with MemorySampler(stack) as memory:
            set_consumers(stack, on=False)
            bare = run_load(f"{stack.base_url}/healthz", connections=32, seconds=SECONDS)
            copy_rate = copy_baseline(stack)
            runs = {}
            for batch, connections in ((1, 32), (100, 8), (1000, 4)):
                # Warm-up, not counted: each web thread's first requests open its database
                # connection and prepare its statements (the first seconds ran 20-25 % slower).
                run_load(
                    f"{stack.base_url}/api/v1/messages",
                    method="POST",
                    make_body=SendBodies(batch, key, tag="warm"),
                    connections=connections,
                    seconds=WARM_UP_SECONDS,
                )
                runs[batch] = run_load(
                    f"{stack.base_url}/api/v1/messages",
                    method="POST",
                    make_body=SendBodies(batch, key),
                    connections=connections,
                    seconds=SECONDS,
                )
            _drop_accept_backlog(stack)
            print("Delivery: 50,000 SMS through the simulator (20 ms provider latency) …", flush=True)
            delivered_rate, delivered_seconds = delivery_throughput(stack, key)
            settled = settle(stack, "bench_delivery")
            print(f"  (its receipts applied {settled:.1f} s after the last send)", flush=True)
            print("Critical lane under a 100,000-message bulk backlog …", flush=True)
            p50_critical, p99_critical, probes = critical_under_backlog(stack, key)
        print("\nBaselines (same run, same server settings):")
        print(_line("bare Django JSON endpoint /healthz", bare, 1))
        print(f"  {'raw COPY of the same rows':<34} {copy_rate:>10,.0f} rows/s")
        print("\nAccept path (POST /api/v1/messages; auth, rate limit, idempotency, dedup, frequency, quota, COPY, publish):")
        for batch, result in runs.items():
            print(_line(f"batch size {batch}", result, batch))
        print("\nRatios:")
        print(f"  batch 1    requests/s vs bare endpoint:  {runs[1].rate / bare.rate:6.1%}")
        print(f"  batch 1000 messages/s vs raw COPY:       {runs[1000].rate * 1000 / copy_rate:6.1%}")
        print("\nDelivery (accept → provider accepted; every process co-located on the 2 cores):")
        print(f"  {'50,000 SMS, 20 ms provider latency':<34} {delivered_rate:>10,.0f} delivered/s  ({delivered_seconds:.1f} s)")
        print(f"  {'critical lane under 100k bulk':<34} p50 {p50_critical:7.1f} ms  p99 {p99_critical:7.1f} ms  ({probes} codes)")
        print(f"  {'peak memory (PSS), all processes':<34} {memory.peak / 2**20:>10,.0f} MiB")
        met = {True: "met", False: "NOT met"}
        print(
            f"\nTargets: >= 20,000 msg/s at batch 1000 ({met[runs[1000].rate * 1000 >= 20_000]}); "
            f">= 1,000 req/s single-recipient ({met[runs[1].rate >= 1000]}); "
            f">= 2,000 delivered SMS/s ({met[delivered_rate >= 2000]}); "
            f"critical p99 <= 500 ms ({met[p99_critical <= 500]}); peak RSS <= 2 GiB ({met[memory.peak <= 2 * 2**30]})"
        )
    finally:
        stop_stack(stack)


if __name__ == "__main__":
    main()
