"""`python -m bench.search_index`: what the `q` gram index (msg_content_grams, migration 0012_search) costs
and what it buys, from one run of the stack.

1. Accept path, batch 1,000 (delivery paused, as `make bench`), alternating rounds with and without the
   index on the same stack, so that other load on the box falls on both alike.
2. `GET /api/v1/messages?q=…` over HTTP with N messages of history (default 500,000, spread over 30 days,
   Chinese and Latin texts): median and p95 of rare and common words, with and without the index."""

from __future__ import annotations

import argparse
import os
import statistics
import time
import urllib.parse
import urllib.request

from bench.load import run_load
from bench.throughput import (
    SECONDS,
    WARM_UP_SECONDS,
    SendBodies,
    Stack,
    _drop_accept_backlog,
    _sql,
    _templates,
    bench_account,
    set_consumers,
    start_stack,
    stop_stack,
)

# As migration 0012_search makes it: settled messages only.
CREATE_INDEX = (
    "CREATE INDEX IF NOT EXISTS msg_content_grams ON dispatch_message USING gin (mc_grams(content)) "
    "WHERE status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired', 'canceled', 'suppressed', 'rejected')"
)
DROP_INDEX = "DROP INDEX IF EXISTS msg_content_grams"
RARE = 20  # messages holding each rare word
WORDS = {
    "rare Latin": "zebra-crossing",
    "rare Chinese": "菜鸟驿站",
    "common Latin": "shipped",
    "common Chinese": "订单",
    "one character": "龘",
}


def _accept_rate(stack: Stack, key: str) -> float:
    url = f"{stack.base_url}/api/v1/messages"
    run_load(url, method="POST", make_body=SendBodies(1000, key, tag="warm"), connections=4, seconds=WARM_UP_SECONDS)
    result = run_load(url, method="POST", make_body=SendBodies(1000, key), connections=4, seconds=SECONDS)
    return result.rate * 1000


def accept_with_and_without(stack: Stack, key: str, rounds: int) -> dict[bool, list[float]]:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_number in range(rounds):
        for indexed in (True, False) if round_number % 2 == 0 else (False, True):
            _sql(stack, "TRUNCATE dispatch_message, dispatch_outbox CASCADE")  # each round on an empty table
            _sql(stack, CREATE_INDEX if indexed else DROP_INDEX)
            rates[indexed].append(_accept_rate(stack, key))
            print(
                f"  round {round_number + 1}, {'with' if indexed else 'without'} the index: {rates[indexed][-1]:,.0f} msg/s",
                flush=True,
            )
    return rates


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) the database backend `pid` has used: its own work, whatever else the box runs."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


COPY_ROWS = """
INSERT INTO {table} (id, account_id, batch_id, template_code, channel, category, priority, address, user_id, params, title,
    content, status, code, detail, provider, provider_message_id, attempts, created_at, expires_at, needs_reconcile)
SELECT (lpad(to_hex(%(start)s::bigint + i), 12, '0') || '70008000' || lpad(to_hex(i), 12, '0'))::uuid,
       %(account)s, %(account)s, 'bench_notice', 'sms', 'transactional', 'high', '+8613' || lpad(i::text, 9, '0'), '',
       '{{"order_no": "A1"}}', '',
       CASE i %% 2 WHEN 0 THEN '【ACME】Your order A' || i || ' has shipped.'
                   ELSE '【ACME】您的订单' || i || '已发货 请注意查收。' END,
       %(status)s, '', '', '', '', 0, now(), now() + interval '1 hour', false
FROM generate_series(%(first)s::int, %(last)s::int) AS i
"""
MOVES = (
    ("sending", "lease_until = now()"),
    ("sent", "lease_until = NULL, sent_at = now()"),
    ("delivered", "delivered_at = now()"),
)
VARIANTS = {
    "no gram index": "",
    "gram index on every row": "CREATE INDEX ON {table} USING gin (mc_grams(content))",
    "gram index, settled rows (shipped)": "CREATE INDEX ON {table} USING gin (mc_grams(content)) WHERE status IN "
    "('sent', 'delivered', 'undelivered', 'failed', 'expired', 'canceled', 'suppressed', 'rejected')",
}


def database_cpu_per_row(stack: Stack, account_id: str, rows: int) -> dict[str, tuple[float, float]]:
    """The database's CPU µs per message for the accept path's insert (1,000 rows a statement, status queued)
    and for each of delivery's three status moves, into a copy of dispatch_message with each index variant."""
    [(pid,)] = _sql(stack, "SELECT pg_backend_pid()")
    figures: dict[str, list[tuple[float, float]]] = {}
    for _ in range(2):
        for label, create in VARIANTS.items():
            _sql(stack, "DROP TABLE IF EXISTS bench_cpu")
            _sql(stack, "CREATE TABLE bench_cpu (LIKE dispatch_message INCLUDING ALL)")
            _sql(stack, "DROP INDEX IF EXISTS bench_cpu_mc_grams_idx")
            if create:
                _sql(stack, create.format(table="bench_cpu"))
            start, before = int(time.time() * 1000), _backend_cpu(int(pid))
            for first in range(1, rows + 1, 1000):
                params = {"start": start, "account": account_id, "status": "queued", "first": first, "last": first + 999}
                _sql(stack, COPY_ROWS.format(table="bench_cpu"), params)
            inserted = _backend_cpu(int(pid))
            ids = [row[0] for row in _sql(stack, "SELECT id FROM bench_cpu ORDER BY id")]
            after_read = _backend_cpu(int(pid))
            for status, columns in MOVES:
                for first in range(0, rows, 1000):
                    statement = f"UPDATE bench_cpu SET status = %s, {columns} WHERE id = ANY(%s)"  # noqa: S608 - fixed columns
                    _sql(stack, statement, (status, ids[first : first + 1000]))
            moved = _backend_cpu(int(pid))
            per_move = (moved - after_read) / rows / len(MOVES) * 1e6
            figures.setdefault(label, []).append(((inserted - before) / rows * 1e6, per_move))
    _sql(stack, "DROP TABLE IF EXISTS bench_cpu")
    return {label: (min(r[0] for r in runs), min(r[1] for r in runs)) for label, runs in figures.items()}


def seed_history(stack: Stack, account_id: str, rows: int) -> None:
    """`rows` delivered messages over the last 30 days, four kinds of text; RARE of them hold each rare word."""
    start = int((time.time() - 30 * 86400) * 1000)
    step = 30 * 86400 * 1000 // rows
    _sql(
        stack,
        """
        INSERT INTO dispatch_message (id, account_id, batch_id, template_code, channel, category, priority, address,
            user_id, params, title, content, status, code, detail, provider, provider_message_id, attempts,
            created_at, expires_at, needs_reconcile)
        SELECT (lpad(to_hex(%(start)s::bigint + i::bigint * %(step)s), 12, '0') || '70008000' || lpad(to_hex(i), 12, '0'))::uuid,
               %(account)s, %(account)s, 'history', 'sms', 'transactional', 'high', '+86139' || lpad(i::text, 8, '0'), '',
               '{}', '',
               CASE i %% 4
                 WHEN 0 THEN '【ACME】Your order A' || i || ' has shipped.'
                 WHEN 1 THEN '【ACME】您的订单' || i || '已发货 请注意查收。'
                 WHEN 2 THEN '【ACME】Your verification code is ' || (i::bigint * 7919 %% 1000000) || '. Valid for 5 minutes.'
                 ELSE '【ACME】尊敬的会员 您的积分 ' || (i %% 9973) || ' 即将过期 退订回T'
               END,
               'delivered', '', '', 'sim-aliyun', 'h' || i, 1,
               to_timestamp((%(start)s::bigint + i::bigint * %(step)s) / 1000.0), now(), false
        FROM generate_series(1, %(rows)s) AS i
        """,
        {"start": start, "step": step, "account": account_id, "rows": rows},
    )
    for word in ("zebra-crossing", "菜鸟驿站"):  # RARE messages of the last 7 days each
        _sql(
            stack,
            """UPDATE dispatch_message SET content = '【ACME】Refund approved, ' || %(word)s || ' ' || provider_message_id
               WHERE id IN (SELECT id FROM dispatch_message WHERE template_code = 'history'
                            AND created_at > now() - interval '7 days' ORDER BY random() LIMIT %(rare)s)""",
            {"word": word, "rare": RARE},
        )


def _search_ms(stack: Stack, key: str, word: str, repeats: int) -> tuple[float, float, int]:
    url = f"{stack.base_url}/api/v1/messages?{urllib.parse.urlencode({'q': word, 'limit': 50})}"
    took, found = [], 0
    for _ in range(repeats):
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310 - our own loopback URL
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - our own loopback URL
            found = response.read().count(b'"id":"msg_')
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return statistics.median(took), took[int(0.95 * (len(took) - 1))], found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000, help="messages of history for the search figures")
    parser.add_argument("--rounds", type=int, default=4, help="accept rounds with and without the index, alternating")
    parser.add_argument("--cpu-rows", type=int, default=50_000, help="rows for the database CPU figures")
    parser.add_argument("--repeats", type=int, default=20, help="requests per search figure")
    args = parser.parse_args()
    print("Starting the stack …", flush=True)
    stack = start_stack()
    try:
        key = bench_account(stack)
        _templates(stack, key)
        set_consumers(stack, on=False)
        print(f"Accept path, batch 1000, {SECONDS:.0f} s per round (delivery paused):", flush=True)
        rates = accept_with_and_without(stack, key, args.rounds)
        _drop_accept_backlog(stack)
        _sql(stack, "DELETE FROM dispatch_message")
        _sql(stack, DROP_INDEX)
        [(account_id,)] = _sql(stack, "SELECT id::text FROM accounts_account WHERE name = 'bench'")
        print("Database CPU per message, with and without the index …", flush=True)
        cpu = database_cpu_per_row(stack, str(account_id), args.cpu_rows)
        print(f"Seeding {args.rows:,} messages of history over 30 days …", flush=True)
        seed_history(stack, str(account_id), args.rows)
        _sql(stack, "VACUUM (ANALYZE) dispatch_message")
        figures: dict[bool, dict[str, tuple[float, float, int]]] = {}
        for indexed in (False, True):
            if indexed:
                started = time.perf_counter()
                _sql(stack, CREATE_INDEX)
                built = time.perf_counter() - started
                _sql(stack, "ANALYZE dispatch_message")
            figures[indexed] = {label: _search_ms(stack, key, word, args.repeats) for label, word in WORDS.items()}
        [(table, index)] = _sql(
            stack,
            "SELECT pg_size_pretty(pg_relation_size('dispatch_message')), pg_size_pretty(pg_relation_size('msg_content_grams'))",
        )
    finally:
        stop_stack(stack)

    with_index, without = statistics.median(rates[True]), statistics.median(rates[False])
    print("\nAccept path, batch 1000 (median of the rounds):")
    print(f"  without the gram index {without:>10,.0f} msg/s")
    print(f"  with the gram index    {with_index:>10,.0f} msg/s  ({with_index / without:.1%})")
    print("\nDatabase CPU per message (the backend's own user + system time; lower of two runs):")
    for label, (insert, move) in cpu.items():
        print(f"  {label:<36} insert {insert:6.1f} µs   each status move {move:6.1f} µs")
    print(f"\nq search, {args.rows:,} messages of history (default window: the last 7 days), median / p95 of {args.repeats}:")
    for label, word in WORDS.items():
        (m0, p0, n0), (m1, p1, n1) = figures[False][label], figures[True][label]
        print(
            f"  {label:<15} {word!r:<18} without {m0:7.1f} / {p0:7.1f} ms   with {m1:7.1f} / {p1:7.1f} ms"
            f"   ({n1} found{'' if n0 == n1 else f', without: {n0}'})"
        )
    print(f"\nTable {table}, gram index {index} (built in {built:.1f} s).")


if __name__ == "__main__":
    main()
