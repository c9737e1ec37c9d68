"""The stack under test: `make run`'s launcher on a scratch data folder and ports of its own, sized
small (the box is shared), and the handles a fault needs — its processes, its embedded servers, the
simulator's control endpoints."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from devstack import embedded
from devstack.background import BASE_DIR, Background, launch

# Few processes and children: two cores, shared. Shorter leases than the defaults (60 s sending,
# 120 s queued) so that a message whose worker died is found again within a scenario's deadline;
# the mechanism is the same, only the wait is shorter. A lease stays well above the slowest send
# (a 10 s slow provider against a 5 s read timeout).
STACK_ENV = {
    "WEB_WORKERS": "1",
    "WEB_THREADS": "6",
    "RECEIPTS_THREADS": "2",
    "CRITICAL_WORKERS": "2",
    "HIGH_WORKERS": "1",
    "BULK_WORKERS": "1",
    "DISPATCH_SENDING_LEASE_SECONDS": "30",
    "DISPATCH_QUEUED_LEASE_SECONDS": "40",
    "RECEIPT_TIMEOUT_SECONDS": "60",
}
DOMESTIC_SMS = ("aliyun", "tencent", "volcengine")
ALL_SMS = (*DOMESTIC_SMS, "twilio")


@dataclass
class Stack:
    run: Background
    data_dir: Path
    services: embedded.Services
    receipt_token: str = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.run.ports['PORT']}"

    @property
    def receipts_url(self) -> str:
        return f"http://127.0.0.1:{self.run.ports['RECEIPTS_PORT']}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.run.ports['SIM_PORT']}"

    def manage(self, *args: str) -> str:
        """A manage.py command beside the stack (same embedded servers); its stdout."""
        result = subprocess.run(
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            cwd=BASE_DIR,
            env=self.run.env,
            text=True,
            capture_output=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def create_account(self, name: str, *, daily_quota: int = 2_000_000_000) -> str:
        """A new account's API key (the command prints it last)."""
        out = self.manage("create_account", name, "--rate-limit", "1000000", "--daily-quota", str(daily_quota))
        return out.strip().splitlines()[-1]

    # --- processes ---------------------------------------------------------------------------

    def child(self, marker: str) -> psutil.Process | None:
        """The launcher's live child whose command line holds `marker` (None while it is restarting)."""
        for process in psutil.Process(self.run.process.pid).children():
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE and marker in " ".join(process.cmdline()):
                    return process
        return None

    def worker(self, name: str) -> psutil.Process | None:
        return self.child(f"-n {name}@")

    def beat(self) -> psutil.Process | None:
        return self.child("celery_app beat")

    def web(self) -> psutil.Process | None:
        return self.child(f"--port {self.run.ports['PORT']} ")

    def launcher_alive(self) -> bool:
        return self.run.process.poll() is None

    # --- the simulator -----------------------------------------------------------------------

    def sim(self, method: str, path: str, body: object | None = None) -> Any:
        response = httpx.request(method, self.sim_url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def sim_behave(self, providers: tuple[str, ...], **changes: object) -> None:
        for provider in providers:
            self.sim("POST", "/_sim/behavior", {"provider": provider, **changes})

    def sim_heal(self) -> None:
        """Every provider answers at once and accepts everything again (the log stays)."""
        self.sim("POST", "/_sim/behavior", {"provider": "*", "fail_rate": 0.0, "latency_ms": 0, "receipt": "delivered"})

    def sim_records(self) -> list[dict[str, Any]]:
        """Everything the simulated providers accepted, oldest first. While the simulator is being
        restarted the answer is retried; a restart loses its memory, which a checker would see."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return list(self.sim("GET", "/_sim/messages")["results"])
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def start(work_dir: Path) -> Stack:
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting the stack under {data_dir} …", flush=True)
    run = launch(data_dir, work_dir / "launcher.log", STACK_ENV, timeout=300)
    stack = Stack(run, data_dir, embedded.Services.at(data_dir))
    # The launcher set the simulator's push URL from this token; the command prints the same one again.
    stack.receipt_token = stack.manage("configure_simulator_receipts").split()[-1]
    return stack


def stop(stack: Stack) -> None:
    """SIGTERM to the launcher's group; it stops every child and the embedded servers."""
    process = stack.run.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    # Servers a fault left stopped or restarted outside the launcher's knowledge.
    with contextlib.suppress(Exception):
        stack.services.stop()


@contextlib.contextmanager
def running(work_dir: Path) -> Iterator[Stack]:
    stack = start(work_dir)
    try:
        yield stack
    finally:
        stop(stack)
