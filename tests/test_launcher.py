"""`make run`'s launcher on a fresh data folder: comes up, answers /readyz, and stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.helpers import BASE_DIR, free_port, stop_process_group, wait_until

pytestmark = pytest.mark.slow


def test_launcher_serves_and_sigterm_stops_every_process(tmp_path) -> None:
    ports = {"PORT": free_port(), "RECEIPTS_PORT": free_port(), "FLOWER_PORT": free_port(), "SIM_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env |= {"MC_DATA_DIR": str(tmp_path / "data"), "WEB_WORKERS": "1", **{k: str(v) for k, v in ports.items()}}
    log = tmp_path / "launcher.log"
    with open(log, "wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "devstack.launcher"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: b"is up" in log.read_bytes() or launcher.poll() is not None, 180, "the launcher")
        output = log.read_text()
        assert launcher.poll() is None, output
        assert "password:" in output
        assert f"http://127.0.0.1:{ports['FLOWER_PORT']}/" in output

        with urllib.request.urlopen(f"http://127.0.0.1:{ports['PORT']}/readyz", timeout=5) as response:
            assert json.load(response)["checks"] == {"database": "ok", "broker": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['SIM_PORT']}/_sim/messages", timeout=5) as response:
            assert json.load(response) == {"results": []}

        ours = psutil.Process(launcher.pid).children(recursive=True)
        for server in ("postgres/pgdata/postmaster.pid", "redis/redis.pid"):
            ours.append(psutil.Process(int((tmp_path / "data" / server).read_text().splitlines()[0])))
        assert len(ours) >= 9

        launcher.send_signal(signal.SIGTERM)
        launcher.wait(60)
        time.sleep(0.5)
        alive = [p for p in ours if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        stop_process_group(launcher)
