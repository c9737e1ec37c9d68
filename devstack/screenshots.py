"""`make screenshots`: the staff dashboard checked in a real browser, with screenshots for the docs.

Starts the default run on a scratch data folder (devstack/background.py), makes traffic through the
provider simulator so that every chart has data — two accounts, SMS over the +86 providers and Twilio,
one provider failing part of its calls, one whose receipts say undelivered, a slow bulk lane with a
backlog, scheduled messages and callbacks to a business system that is down — signs in to the admin
as the operator the launcher made, and has headless Chromium render `/admin/dashboard/`. It fails when
a chart is empty or the page reports an error, and saves PNGs (docs/screenshots/ by default).

    .venv/bin/python -m devstack.screenshots [--out docs/screenshots] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from devstack.background import BASE_DIR, Background, free_port, launch
from devstack.chromium import BrowserError, browser_page

# Per chart on the page, the number of points its series hold that are not zero (window.mcDashboard,
# dashboard.js): a chart of zeros draws nothing an operator can see.
CHART_POINTS = """
Object.fromEntries(Object.entries(window.mcDashboard.charts).map(([id, chart]) => [id,
    (chart.getOption().series || []).reduce((n, s) => n + (s.data || []).filter(v => {
        const y = Array.isArray(v) ? v[1] : v;
        return y !== null && y !== undefined && y !== 0;
    }).length, 0)]))
"""
CHARTS = (
    "chart-volume-channel",
    "chart-volume-lane",
    "chart-success-rate",
    "chart-call-latency",
    "chart-delivery-rate",
    "chart-receipt-latency",
    "chart-errors",
    "chart-lanes",
    "chart-backlogs",
    "chart-quota",
)


def _http(method: str, url: str, body: Any = None, key: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - our own loopback URL
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - our own loopback URL
        raw = answer.read()
    return json.loads(raw) if raw else None


def _manage(run: Background, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=run.env, capture_output=True, text=True, check=True
    )
    return done.stdout


class Traffic:
    """Accounts, templates and sends through the public API of a running stack."""

    def __init__(self, run: Background) -> None:
        self.run = run
        self.api = f"http://127.0.0.1:{run.ports['PORT']}/api/v1"
        self.sim = f"http://127.0.0.1:{run.ports['SIM_PORT']}"
        self.keys: dict[str, str] = {}
        self.serial = 0

    def setup(self) -> None:
        dead_end = f"http://127.0.0.1:{free_port()}/callbacks"  # a business system that is down
        for name, quota in (("shop", 20_000), ("bank", 1_000)):
            self.keys[name] = _manage(self.run, "create_account", name, "--daily-quota", str(quota)).strip().splitlines()[-1]
            ids = {"aliyun": "SMS_1234", "tencent": "1234", "volcengine": "ST_00001234"}
            template: dict[str, Any] = {"code": "notice", "name": "Notice", "channel": "sms", "category": "transactional"}
            template |= {"content": "Your order {{order_no}} has shipped.", "sms_signature": "ACME", "provider_template_ids": ids}
            _http("POST", f"{self.api}/templates", template, self.keys[name])
        _http("PATCH", f"{self.api}/account", {"callback_url": dead_end}, self.keys["bank"])
        _http("POST", f"{self.sim}/_sim/behavior", {"provider": "tencent", "fail_rate": 0.4, "error": "http_500"})
        _http("POST", f"{self.sim}/_sim/behavior", {"provider": "volcengine", "receipt": "undelivered"})
        _http("POST", f"{self.sim}/_sim/behavior", {"provider": "aliyun", "receipt_delay_ms": 1500})
        _http("POST", f"{self.sim}/_sim/behavior", {"provider": "twilio", "latency_ms": 4000})  # the bulk lane falls behind

    def send(self, account: str, count: int, *, prefix: str = "+86139", digits: int = 8, **extra: Any) -> None:
        for start in range(0, count, 500):
            to = []
            for _ in range(min(500, count - start)):
                self.serial += 1
                to.append({"phone": f"{prefix}{self.serial:0{digits}d}", "params": {"order_no": f"A{self.serial}"}})
            _http("POST", f"{self.api}/messages", {"template": "notice", "to": to, **extra}, self.keys[account])

    def round(self) -> None:
        self.send("shop", 150)
        self.send("bank", 60)
        self.send("shop", 40, priority="critical")
        self.send("shop", 1500, prefix="+1415555", digits=4, priority="bulk")  # through Twilio, slow: a backlog
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
        self.send("bank", 20, send_at=later)


async def _render(base_url: str, password: str, out: Path, width: int) -> dict[str, int]:
    async with browser_page(width=width) as page:
        await page.goto(f"{base_url}/admin/login/?next=/admin/")
        await page.evaluate(
            f"document.getElementById('id_username').value = 'operator';"
            f"document.getElementById('id_password').value = {json.dumps(password)};"
            "document.getElementById('login-form').submit(); true"
        )
        await page.wait_for("location.pathname === '/admin/' && document.readyState === 'complete'", 30, "the admin index")
        await page.screenshot(out / "admin-index.png", width)
        await page.goto(f"{base_url}/admin/dashboard/")
        points: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while True:  # the last calls' receipts may still be on their way: the data again until every chart has some
            loads = await page.wait_for(
                "window.mcDashboard && (window.mcDashboard.loads || window.mcDashboard.error)", 30, "data"
            )
            error = await page.evaluate("window.mcDashboard.error")
            if error:
                raise BrowserError(f"the dashboard could not load its data: {error}")
            points = await page.evaluate(CHART_POINTS)
            if all(points.get(chart) for chart in CHARTS) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
            await page.evaluate("window.mcDashboard.reload(); true")
            await page.wait_for(f"window.mcDashboard.loads > {loads} || window.mcDashboard.error", 30, "data again")
        await page.screenshot(out / "dashboard.png", width)
        return points


def capture(out: Path, *, rounds: int = 4, pause: float = 30.0, width: int = 1400) -> dict[str, int]:
    """Runs the stack, the traffic and the browser; the points per chart. Raises when a chart is empty."""
    with tempfile.TemporaryDirectory(prefix="mc-screenshots-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        run = launch(data_dir, Path(scratch) / "launcher.log", {"WEB_WORKERS": "1"})
        try:
            found = re.search(r"password: (\S+)", run.log.read_text())
            if found is None:
                raise BrowserError("the launcher printed no operator password")
            traffic = Traffic(run)
            traffic.setup()
            for number in range(rounds):
                traffic.round()
                if number + 1 < rounds:
                    time.sleep(pause)
            time.sleep(5)  # the last round's first calls and receipts; the bulk lane is still behind
            points = asyncio.run(_render(f"http://127.0.0.1:{run.ports['PORT']}", found.group(1), out, width))
        finally:
            run.process.terminate()
            run.process.wait(60)
    empty = [chart for chart in CHARTS if not points.get(chart)]
    if empty:
        raise BrowserError(f"charts without data: {', '.join(empty)} (points: {points})")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BASE_DIR / "docs" / "screenshots")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of traffic, --pause seconds apart")
    parser.add_argument("--pause", type=float, default=30.0)
    options = parser.parse_args()
    points = capture(options.out, rounds=options.rounds, pause=options.pause)
    print("points per chart:", json.dumps(points))
    print(f"screenshots in {options.out}: admin-index.png, dashboard.png")


if __name__ == "__main__":
    main()
