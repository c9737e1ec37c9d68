"""PostgreSQL stopped under a steady stream of verification codes (issue #22, Build 4: the spool).

Starts the real stack (the launcher, as `make run`), sends codes (`POST /api/v1/verifications`, each to
a number of its own) at a steady rate, stops the embedded PostgreSQL for `--outage` seconds, starts it
again, and waits until the spool is empty. Then, from the simulator's log, the database and the
answers: every code accepted during the outage must have reached the provider during it, be in the
database exactly once (one row, one `sent` event, one verification), and every refused request must
have been 503 `unavailable`.

    .venv/bin/python -m bench.outage [--outage 60] [--rate 10]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import redis as redis_module

from bench.throughput import DATA_DIR, Stack, _probe_connections, _sql, bench_account, start_stack, stop_stack
from devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from messaging_center import ids


@dataclass
class Answer:
    at: float  # time.time() when sent
    phone: str
    status: int
    code: str  # the error code, or the message id of an accepted code
    took: float


def _post(stack: Stack, key: str, phone: str) -> Answer:
    started = time.time()
    request = urllib.request.Request(  # noqa: S310 - our own loopback URL
        f"{stack.base_url}/api/v1/verifications",
        data=json.dumps({"template": "bench_login", "to": {"phone": phone}}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, body = response.status, json.load(response)
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"code": f"not JSON: {raw[:60]!r}"}
    except OSError as error:
        return Answer(started, phone, 0, f"no answer: {error}", time.time() - started)
    return Answer(started, phone, status, body.get("message_id") or body.get("code", ""), time.time() - started)


def _stream(stack: Stack, key: str, rate: float, stop: threading.Event, answers: list[Answer]) -> None:
    number = 0
    next_at = time.monotonic()
    while not stop.is_set():
        answers.append(_post(stack, key, f"+8613{700000000 + number:09d}"))
        number += 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))


def _sim_messages(stack: Stack) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{stack.env['SIM_PORT']}/_sim/messages"
    with urllib.request.urlopen(url, timeout=30) as response:
        return list(json.load(response)["results"])


def _digits(phone: object) -> str:
    return "".join(c for c in str(phone) if c.isdigit())[-11:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds PostgreSQL is stopped")
    parser.add_argument("--rate", type=float, default=10.0, help="verification codes per second")
    parser.add_argument("--warm-up", type=float, default=15.0, help="seconds of codes before the outage")
    args = parser.parse_args()

    stack = start_stack()
    try:
        key = bench_account(stack)
        template = {
            "code": "bench_login",
            "name": "bench_login",
            "channel": "sms",
            "category": "verification",
            "content": "Your code is {{code}}.",
            "sms_signature": "ACME",
            "provider_template_ids": {"aliyun": "SMS_101", "tencent": "1002", "volcengine": "ST_00000101"},
        }
        request = urllib.request.Request(  # noqa: S310 - our own loopback URL
            f"{stack.base_url}/api/v1/templates",
            data=json.dumps(template).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310
        postgres = EmbeddedPostgres(DATA_DIR / "postgres")
        redis = EmbeddedRedis(DATA_DIR / "redis")

        answers: list[Answer] = []
        stop = threading.Event()
        sender = threading.Thread(target=_stream, args=(stack, key, args.rate, stop, answers), daemon=True)
        sender.start()
        time.sleep(args.warm_up)
        for conn in _probe_connections.values():
            conn.close()  # type: ignore[attr-defined]  # dies with the server; _sql opens a new one
        print(f"stopping PostgreSQL for {args.outage:.0f} s …", flush=True)
        down_at = time.time()
        postgres.stop()
        time.sleep(args.outage)
        postgres.ensure_running()
        up_at = time.time()  # the outage lasts until PostgreSQL answers again (its start-up included)
        print("PostgreSQL started again", flush=True)
        # When every message accepted during the outage has left the spool (the stream goes on).
        spool = redis_module.Redis.from_url(redis.url())
        outage_ids = {_uuid(a.code).replace("-", "") for a in answers if down_at <= a.at < up_at and a.status == 202}
        emptied = 0.0
        while time.time() < up_at + args.warm_up or (not emptied and time.time() < up_at + 120):
            if not emptied and not outage_ids & {m.decode() for m in spool.zrange("mc:spool:ids", 0, -1)}:
                emptied = time.time()
            time.sleep(0.2)
        stop.set()
        sender.join()
        while spool.zcard("mc:spool:ids") and time.time() < up_at + 120:
            time.sleep(0.5)
        left = spool.zcard("mc:spool:ids")
        fsync = spool.config_get("appendfsync")["appendfsync"]
        time.sleep(5)  # the codes accepted after the outage reach the provider

        during = [a for a in answers if down_at <= a.at < up_at]
        accepted = [a for a in during if a.status == 202]
        refused = [a for a in during if a.status != 202]
        received: dict[str, list[dt.datetime]] = collections.defaultdict(list)
        for record in _sim_messages(stack):
            received[_digits(record["to"])].append(dt.datetime.fromisoformat(str(record["received_at"])))
        up = dt.datetime.fromtimestamp(up_at, dt.UTC)
        delivered_during = [a for a in accepted if any(t < up for t in received[_digits(a.phone)])]
        latencies = sorted(
            (min(received[_digits(a.phone)]) - dt.datetime.fromtimestamp(a.at, dt.UTC)).total_seconds() for a in delivered_during
        )
        accepted_ids = [a.code for a in accepted]
        rows = _sql(
            stack,
            "SELECT m.status, (SELECT count(*) FROM dispatch_messageevent e WHERE e.message_id = m.id AND e.status = 'sent'), "
            "(SELECT count(*) FROM receipts_verification v WHERE v.message_id = m.id) "
            "FROM dispatch_message m WHERE m.id = ANY(%s::uuid[])",
            ([_uuid(i) for i in accepted_ids],),
        )
        statuses = collections.Counter(str(r[0]) for r in rows)
        once = sum(1 for r in rows if r[1] == 1 and r[2] == 1)
        twice_at_provider = sum(1 for a in accepted if len(received[_digits(a.phone)]) > 1)
        all_answers = collections.Counter((a.status, a.code if a.status != 202 else "") for a in answers)

        print()
        print(f"outage {up_at - down_at:.1f} s at {args.rate:.0f} codes/s")
        print(f"every code accepted during the outage out of the spool {emptied - up_at:.1f} s after PostgreSQL was back")
        print(f"requests during the outage: {len(during)}; accepted 202: {len(accepted)}; refused: {len(refused)}")
        print(f"refusals: {dict(collections.Counter((a.status, a.code) for a in refused))}")
        print(f"every refusal 503 unavailable: {all(a.status == 503 and a.code == 'unavailable' for a in refused)}")
        print(f"accepted codes at the provider during the outage: {len(delivered_during)} of {len(accepted)}")
        for a in accepted:
            if a not in delivered_during:
                first = min(received[_digits(a.phone)], default=None)
                after = f"{(first - up).total_seconds():.2f} s after PostgreSQL was back" if first else "never"
                asked = f"asked {a.at - down_at:.2f} s after the stop, answered in {a.took * 1000:.0f} ms"
                print(f"  not yet: {asked}; at the provider {after}")
        if latencies:
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"  accept → provider: p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        print(f"answer time during the outage: p50 {statistics.median([a.took for a in during]) * 1000:.0f} ms" if during else "")
        print(f"in the database afterwards: {len(rows)} of {len(accepted)} ({dict(sorted(statuses.items()))});")
        print(f"  with exactly one `sent` event and one verification: {once}")
        print(f"accepted codes sent to the person more than once: {twice_at_provider}")
        print(f"left in the spool: {left}; Redis appendfsync afterwards: {fsync}")
        print(f"all answers of the run: {dict(all_answers)}")
    finally:
        stop_stack(stack)


def _uuid(public_id: str) -> str:
    return str(ids.decode("msg", public_id))


if __name__ == "__main__":
    main()
