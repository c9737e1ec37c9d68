"""`python -m bench.hedge`: verification codes with one SMS provider answering after 10 s (issue #22,
"verification codes never wait on a slow provider"). Starts the real stack (the launcher, as `make run`
does) on `.data/bench`, makes the simulator's Tencent answer after `--slow-ms`, sends codes one request
at a time through `POST /api/v1/verifications` at `--rate` per second for `--seconds`, and prints their
accept → sent latencies (the database's clock on both ends), how many were hedged, the slow provider's
late answers and how many people the simulator reached twice. `--compare` first runs the same with
hedging off (PROVIDER_CALL_DEADLINE_CRITICAL_MS=0) on a stack of its own."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections import Counter

from bench.throughput import DATA_DIR, Stack, _api, _sim, _sql, bench_account, start_stack, stop_stack

SLOW_PROVIDER = "tencent"
TEMPLATE = "bench_code"
LATENCIES = (
    "SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms) "
    "FROM (SELECT extract(epoch FROM sent_at - created_at) * 1000 AS ms FROM dispatch_message "
    "WHERE template_code = %s AND sent_at IS NOT NULL) t"
)


def _codes(stack: Stack, key: str, rate: float, seconds: float) -> int:
    """One verification request per code, paced; each to a number of its own (frequency limits)."""
    total = int(rate * seconds)
    started = time.monotonic()
    for i in range(total):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        _api(stack, "POST", "/api/v1/verifications", key, {"to": {"phone": f"+8613{700_000_000 + i:09d}"}, "template": TEMPLATE})
    return total


def _wait(stack: Stack, what: str, query: str, params: tuple[object, ...], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        [(done,)] = _sql(stack, query, params)
        if done:
            return
        time.sleep(0.5)
    print(f"  (gave up waiting for {what} after {limit:.0f} s)")


def _simulator_people_reached_twice(stack: Stack) -> int:
    url = f"http://127.0.0.1:{stack.env['SIM_PORT']}/_sim/messages"
    with urllib.request.urlopen(url, timeout=30) as response:
        records = json.load(response)["results"]
    per_person = Counter(r["to"] for r in records if r["to"].startswith("+86137"))
    return sum(1 for count in per_person.values() if count > 1)


def run(*, hedging: bool, slow_ms: int, rate: float, seconds: float) -> None:
    print(f"Starting the stack under {DATA_DIR} (hedging {'on' if hedging else 'off'}) …", flush=True)
    stack = start_stack({} if hedging else {"PROVIDER_CALL_DEADLINE_CRITICAL_MS": "0"})
    try:
        key = bench_account(stack)
        ids = {"aliyun": "SMS_101", "tencent": "1002", "volcengine": "ST_00000101"}
        body = {"channel": "sms", "category": "verification", "content": "Your code is {{code}}.", "sms_signature": "ACME"}
        _api(stack, "POST", "/api/v1/templates", key, {"code": TEMPLATE, "name": TEMPLATE, "provider_template_ids": ids, **body})
        _sim(stack, "/_sim/behavior", {"provider": SLOW_PROVIDER, "latency_ms": slow_ms})
        total = _codes(stack, key, rate, seconds)
        _wait(
            stack,
            "every code sent",
            "SELECT count(*) >= %s FROM dispatch_message WHERE template_code = %s AND sent_at IS NOT NULL",
            (total, TEMPLATE),
            90,
        )
        time.sleep(slow_ms / 1000 + 2)  # the slow provider's last answers
        [(count, (p50, p95, p99), worst)] = _sql(stack, LATENCIES, (TEMPLATE,))
        providers = dict(
            _sql(
                stack,
                "SELECT provider, count(*) FROM dispatch_message WHERE template_code = %s GROUP BY 1 ORDER BY 1",
                (TEMPLATE,),
            )
        )
        hedged = _sql(
            stack,
            "SELECT count(*) FILTER (WHERE e.detail LIKE %s), count(*) FILTER (WHERE e.detail LIKE %s) "
            "FROM dispatch_messageevent e JOIN dispatch_message m ON m.id = e.message_id "
            "WHERE m.template_code = %s AND e.status = 'sent'",
            ("%had not answered within%", "%was tried as well%", TEMPLATE),
        )[0]
        late = dict(
            _sql(
                stack,
                "SELECT e.code, count(*) FROM dispatch_messageevent e JOIN dispatch_message m ON m.id = e.message_id "
                "WHERE m.template_code = %s AND e.status = 'late_answer' GROUP BY 1 ORDER BY 1",
                (TEMPLATE,),
            )
        )
        retried = _sql(stack, "SELECT count(*) FROM dispatch_message WHERE template_code = %s AND attempts > 1", (TEMPLATE,))
        print(f"  codes sent {count} of {total} ({rate:g}/s for {seconds:g} s), {SLOW_PROVIDER} answering after {slow_ms} ms")
        print(f"  accept → sent: p50 {p50:,.0f} ms, p95 {p95:,.0f} ms, p99 {p99:,.0f} ms, max {worst:,.0f} ms")
        print(f"  sent by provider: {providers}")
        print(f"  hedged: {hedged[0]} won by the second provider, {hedged[1]} by the slow one after all")
        print(f"  late answers recorded: {late or 'none'}; codes that needed a second attempt: {retried[0][0]}")
        print(f"  people the simulator reached twice: {_simulator_people_reached_twice(stack)}", flush=True)
        slowest = _sql(
            stack,
            "SELECT round(extract(epoch FROM m.sent_at - m.created_at) * 1000), m.provider, "
            "(SELECT string_agg(e.status || ' ' || e.provider || ' ' || e.detail || ' @' || "
            "round(extract(epoch FROM e.at - m.created_at) * 1000), ' | ' ORDER BY e.id) "
            "FROM dispatch_messageevent e WHERE e.message_id = m.id) "
            "FROM dispatch_message m WHERE template_code = %s ORDER BY m.sent_at - m.created_at DESC LIMIT 8",
            (TEMPLATE,),
        )
        for row in slowest:
            print("   ", row)
    finally:
        stop_stack(stack)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow-ms", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10.0, help="codes per second")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--compare", action="store_true", help="first the same run with hedging off")
    args = parser.parse_args(argv)
    for hedging in (False, True) if args.compare else (True,):
        run(hedging=hedging, slow_ms=args.slow_ms, rate=args.rate, seconds=args.seconds)


if __name__ == "__main__":
    main()
