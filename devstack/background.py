"""The default run started in the background on a scratch data folder and free ports, as the tests
and the benchmarks use it: the launcher's process, the environment it got, and its ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PORT_NAMES = ("PORT", "RECEIPTS_PORT", "FLOWER_PORT", "SIM_PORT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Background:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    ports: dict[str, int]
    log: Path


class DidNotStart(RuntimeError):
    """The launcher exited or did not say it was up in time; the message ends with its log."""


def launch(data_dir: Path, log: Path, extra_env: Mapping[str, str] | None = None, timeout: float = 180) -> Background:
    """Starts `python -m devstack.launcher` with its own data folder (the embedded servers are its
    own, whatever DATABASE_URL/REDIS_URL say here) and waits until it says it is up."""
    ports = {name: free_port() for name in PORT_NAMES}
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env |= {"MC_DATA_DIR": str(data_dir), **{k: str(v) for k, v in ports.items()}, **(extra_env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.launcher"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while b"is up" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise DidNotStart("the stack did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.25)
    return Background(process, env, ports, log)
