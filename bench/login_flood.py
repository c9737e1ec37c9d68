"""`python -m bench.login_flood`: the API's latency while /admin/login/ is flooded with wrong passwords.

Starts the stack as `make bench` does, then measures GET /api/v1/account (8 keep-alive connections)
alone; during a flood of 120 wrong sign-ins from 32 threads (the issue's flood); and during a flood
that 32 threads keep up for the whole window. Each attempt comes under another name and from another
client address (X-Real-IP, trusted for this run), so that no lockout stops it and every attempt let
through costs its password hash: the worst case for the web threads."""

from __future__ import annotations

import http.client
import itertools
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit

from bench.load import LoadResult, run_load
from bench.throughput import Stack, start_stack, stop_stack

SECONDS = 8.0
FLOOD_THREADS = 32
_TOKEN = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


def _sign_in(base_url: str, attempt: int) -> int:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    address = f"198.18.{attempt // 250 % 250}.{attempt % 250 + 1}"
    try:
        connection.request("GET", "/admin/login/", headers={"X-Real-IP": address})
        page = connection.getresponse()
        form = page.read()
        cookie = (page.getheader("Set-Cookie") or "").split(";")[0]
        match = _TOKEN.search(form)
        if page.status != 200 or not match:
            return page.status
        body = urlencode({"username": f"guess-{attempt}", "password": "wrong-password", "csrfmiddlewaretoken": match.group(1)})
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookie,
            "X-Real-IP": address,
            "Referer": f"{base_url}/admin/login/",
        }
        connection.request("POST", "/admin/login/", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    except OSError:
        return 0
    finally:
        connection.close()


def _flood(stack: Stack, stop: threading.Event, answers: Counter[int], total: int | None) -> None:
    """`total` sign-ins (None: until `stop`) from FLOOD_THREADS threads."""
    attempts = itertools.count()
    lock = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            attempt = next(attempts)
            if total is not None and attempt >= total:
                return
            status = _sign_in(stack.base_url, attempt)
            with lock:
                answers[status] += 1

    with ThreadPoolExecutor(FLOOD_THREADS) as pool:
        for _ in range(FLOOD_THREADS):
            pool.submit(worker)


def _account_load(stack: Stack, key: str) -> LoadResult:
    return run_load(
        f"{stack.base_url}/api/v1/account", headers={"Authorization": f"Bearer {key}"}, connections=8, seconds=SECONDS
    )


def _line(name: str, result: LoadResult) -> str:
    return (
        f"  {name:<28} {result.rate:8.0f} req/s   p50 {result.p50:7.1f} ms   p99 {result.percentile(99):7.1f} ms   "
        f"max {max(result.latencies_ms, default=float('nan')):7.1f} ms   "
        f"non-2xx {sum(n for status, n in result.statuses.items() if status >= 300)}"
    )


def main() -> None:
    stack = start_stack(extra_env={"ADMIN_CLIENT_ADDRESS_HEADER": "HTTP_X_REAL_IP"})
    try:
        key = stack.manage("create_account", "flood", "--rate-limit", "1000000").strip().splitlines()[-1]
        _account_load(stack, key)  # warm-up: connections and prepared statements
        alone = _account_load(stack, key)
        print(f"GET /api/v1/account, 8 connections, {SECONDS:.0f} s each, same run:")
        print(_line("alone", alone))
        for name, total in (("120 wrong sign-ins", 120), ("a sustained sign-in flood", None)):
            stop, answers = threading.Event(), Counter[int]()
            flood = threading.Thread(target=_flood, args=(stack, stop, answers, total), daemon=True)
            timer = threading.Timer(1.0, flood.start)  # the flood starts once the measurement runs
            timer.start()
            flooded = _account_load(stack, key)
            stop.set()
            flood.join(60)
            print(_line(f"during {name}", flooded))
            print(
                f"    p99 / p99 alone: {flooded.percentile(99) / alone.percentile(99):.2f}; sign-ins answered "
                f"{dict(sorted(answers.items()))} (200: checked, the form again; 429: refused at once)"
            )
    finally:
        stop_stack(stack)


if __name__ == "__main__":
    main()
