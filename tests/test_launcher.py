"""`make run`'s launcher on a fresh data folder: comes up, answers /readyz, and stops everything."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import psutil
import pytest

from tests.helpers import launched, wait_until

pytestmark = pytest.mark.slow


def test_launcher_serves_and_sigterm_stops_every_process(tmp_path) -> None:
    with launched(tmp_path / "data") as run:
        output = run.log.read_text()
        assert "password:" in output
        assert f"http://127.0.0.1:{run.ports['FLOWER_PORT']}/" in output

        with urllib.request.urlopen(f"http://127.0.0.1:{run.ports['PORT']}/readyz", timeout=5) as response:
            assert json.load(response)["checks"] == {"database": "ok", "broker": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{run.ports['SIM_PORT']}/_sim/messages", timeout=5) as response:
            assert json.load(response) == {"results": []}

        ours = psutil.Process(run.process.pid).children(recursive=True)
        for server in ("postgres/pgdata/postmaster.pid", "redis/redis.pid"):
            ours.append(psutil.Process(int((tmp_path / "data" / server).read_text().splitlines()[0])))
        assert len(ours) >= 9

        run.process.send_signal(signal.SIGTERM)
        run.process.wait(60)
        time.sleep(0.5)
        alive = [p for p in ours if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], [p.cmdline() for p in alive]


def _named(launcher_pid: int, marker: str) -> list[psutil.Process]:
    """The launcher's live children whose command line holds `marker` (a killed one not yet reaped is not)."""
    found = []
    for child in psutil.Process(launcher_pid).children():
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # a zombie, or gone
            continue
    return found


def test_a_dead_child_is_started_again_and_the_rest_keeps_running(tmp_path) -> None:
    """SIGKILL of the bulk worker and of the web server: each comes back on its own, the API answers
    again, and nothing else was restarted."""
    with launched(tmp_path / "data") as run:
        readyz = f"http://127.0.0.1:{run.ports['PORT']}/readyz"
        others = {p.pid for p in psutil.Process(run.process.pid).children()}
        [bulk] = _named(run.process.pid, "bulk@")
        [web] = _named(run.process.pid, f"--port {run.ports['PORT']} ")
        for victim in (bulk, web):
            victim.send_signal(signal.SIGKILL)
        wait_until(lambda: [p for p in _named(run.process.pid, "bulk@") if p.pid != bulk.pid], 30, "the bulk worker again")
        wait_until(lambda: _answers(readyz), 60, "the API again")
        assert run.process.poll() is None
        kept = {p.pid for p in psutil.Process(run.process.pid).children()}
        assert others - {bulk.pid, web.pid} <= kept  # the other children are the same processes
        log = run.log.read_text()
        assert "worker-bulk exited with -9; starting it again" in log and "worker-bulk started again" in log
        assert "web exited with -9; starting it again" in log


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
