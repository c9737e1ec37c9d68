"""`make run`'s launcher on a fresh data folder: comes up, answers /readyz, and stops everything."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import psutil
import pytest

from tests.helpers import launched

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
