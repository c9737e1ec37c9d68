"""`make run`: every process of the default run, started together and stopped together.

Starts (or reuses) the embedded PostgreSQL and Redis unless `DATABASE_URL`/`REDIS_URL` are set,
migrates, creates an operator login on the first start, then runs the API (granian), one worker per
lane group, beat, Flower and the provider simulator, and supervises them: a child that dies is
started again after a backoff, the others untouched. Ctrl-C or SIGTERM stops every child and the
embedded servers; so does the death of the parent (`make`), through PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from devstack import embedded
from messaging_center.env import env_bool, env_int, require_production_variables

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STOP_GRACE_SECONDS = 15
# A child that dies is started again after a backoff; one that ran this long before dying starts afresh.
RESTART_MAX_SECONDS = 30
HEALTHY_RUN_SECONDS = 60


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None)
    # Lower CPU priority (nice): a draining bulk backlog must not take the CPU from verification codes.
    niceness: int = 0
    # Supervision: when it last started, restarts in a row without a long run, when the next is due.
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None

    def restart_delay(self) -> float:
        """1 s, 2 s, 4 s … up to RESTART_MAX_SECONDS for a child that keeps dying."""
        return float(min(RESTART_MAX_SECONDS, 2 ** max(0, self.restarts - 1)))


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _web_server(
    port: str, workers: str, threads: str, *, app: str = "messaging_center.wsgi:application", access_log: bool
) -> list[str]:
    # Granian: HTTP parsing and keep-alive in Rust, Django in a few blocking threads per worker process
    # (faster than gunicorn's gthread worker: docs/performance.md, Accept path).
    return [
        str(BIN / "granian"),
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--workers",
        workers,
        "--blocking-threads",
        threads,
        "--runtime-threads",
        "1",
        "--no-ws",
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        "10",
        *(["--access-log"] if access_log else []),
        app,
    ]


def _children(settings_env: dict[str, str]) -> list[Child]:
    port = settings_env["PORT"]
    web_workers = settings_env["WEB_WORKERS"]
    celery = [str(BIN / "celery"), "-A", "celery_app"]
    worker = [*celery, "worker", "--loglevel", "INFO", "--without-gossip"]
    return [
        # Access log off unless asked for: a line per request costs CPU (docs/performance.md, Accept path);
        # /metrics has every route's request counts and latencies.
        Child(
            "web", _web_server(port, web_workers, settings_env["WEB_THREADS"], access_log=settings_env["WEB_ACCESS_LOG"] == "1")
        ),
        # Providers' status reports on their own port, one process, lower CPU priority: a storm of
        # reports (Twilio sends one per message) must not slow down accepting verification codes.
        Child(
            "web-receipts",
            _web_server(
                settings_env["RECEIPTS_PORT"],
                "1",
                settings_env["RECEIPTS_THREADS"],
                app="messaging_center.wsgi_receipts:application",
                access_log=False,  # its requests are recorded as receipts
            ),
            niceness=5,
        ),
        # Verification codes alone: a chunk of the high lane waiting on a slow provider (no deadline:
        # transactional messages are not hedged) would hold a child the codes need (make chaos,
        # "Tencent 10 s slow": codes 18 s late behind two such chunks when both lanes shared a worker).
        Child("worker-critical", [*worker, "-Q", "mc.critical", "-n", "critical@%h", "-c", settings_env["CRITICAL_WORKERS"]]),
        Child("worker-high", [*worker, "-Q", "mc.high", "-n", "high@%h", "-c", settings_env["HIGH_WORKERS"]]),
        Child(
            "worker-bulk",
            [*worker, "-Q", "mc.normal,mc.bulk,mc.housekeeping", "-n", "bulk@%h", "-c", settings_env["BULK_WORKERS"]],
            niceness=10,
        ),
        Child("worker-receipts", [*worker, "-Q", "mc.receipts,mc.maintenance", "-n", "receipts@%h", "-c", "1"], niceness=5),
        Child("beat", [*celery, "beat", "--loglevel", "INFO", "--pidfile="]),
        Child("flower", [*celery, "flower", "--address=127.0.0.1", f"--port={settings_env['FLOWER_PORT']}"]),
        Child("simulator", [sys.executable, "-m", "devstack.simulator", "--port", settings_env["SIM_PORT"]]),
    ]


class StartupFailed(Exception):
    """A set-up step failed; its output says why."""


def _manage(*args: str, env: dict[str, str]) -> str:
    """Runs a manage.py command; its stdout, or StartupFailed with everything it printed."""
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, cwd=BASE_DIR, text=True, capture_output=True
    )
    if result.returncode != 0:
        raise StartupFailed(f"manage.py {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _create_operator_once(env: dict[str, str], data_dir: Path) -> None:
    marker = data_dir / "operator-created"
    if marker.exists():
        return
    password = secrets.token_urlsafe(12)
    output = _manage("create_operator", "--username", "operator", env=env | {"MC_OPERATOR_PASSWORD": password})
    marker.write_text("operator\n")
    if "exists" in output:
        return
    print("\n  Operator login for /admin/ (shown only this once):")
    print("    username: operator")
    print(f"    password: {password}\n", flush=True)


def _start(child: Child, env: dict[str, str], log_dir: Path) -> None:
    with open(log_dir / f"{child.name}.log", "ab") as log:
        child.process = subprocess.Popen(
            child.argv,
            cwd=BASE_DIR,
            # Each process's database sessions carry its name (pg_stat_activity.application_name).
            env={"PGAPPNAME": f"mc-{child.name}"} | env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda n=child.niceness: os.nice(n)) if child.niceness else None,
        )
    child.started_at = time.monotonic()


def _wait_http(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    return False


class Launcher:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stopping = False
        self.data_dir = embedded.default_data_dir()
        self.services: embedded.Services | None = None

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        _die_with_parent()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)
        try:
            return self._run()
        except StartupFailed as error:
            print(error, file=sys.stderr)
            return 1
        finally:
            self._stop_all()

    def _run(self) -> int:
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "messaging_center.settings")
        env["PORT"] = str(env_int("PORT", 8000, minimum=1, maximum=65535))
        env["FLOWER_PORT"] = str(env_int("FLOWER_PORT", 5555, minimum=1, maximum=65535))
        env["SIM_PORT"] = str(env_int("SIM_PORT", 8025, minimum=1, maximum=65535))
        env["RECEIPTS_PORT"] = str(env_int("RECEIPTS_PORT", int(env["PORT"]) + 1, minimum=1, maximum=65535))
        env["WEB_WORKERS"] = str(env_int("WEB_WORKERS", 2, minimum=1, maximum=64))
        env["WEB_THREADS"] = str(env_int("WEB_THREADS", 8, minimum=1, maximum=64))
        env["WEB_ACCESS_LOG"] = "1" if env.get("WEB_ACCESS_LOG", "0").strip().lower() in ("1", "true", "yes") else "0"
        # Few threads: a report is a short request, and more threads only fight over the GIL
        # (docs/performance.md, Receipts).
        env["RECEIPTS_THREADS"] = str(env_int("RECEIPTS_THREADS", 2, minimum=1, maximum=64))
        # Prefork children per dispatch worker: chunks in flight at once (each sends on its own threads).
        env["CRITICAL_WORKERS"] = str(env_int("CRITICAL_WORKERS", 4, minimum=1, maximum=64))
        env["HIGH_WORKERS"] = str(env_int("HIGH_WORKERS", 4, minimum=1, maximum=64))
        env["BULK_WORKERS"] = str(env_int("BULK_WORKERS", 2, minimum=1, maximum=64))
        # The default run is the development run whatever servers it is given; told otherwise
        # (MC_DEV_RUN=0) it starts no embedded server and needs every production variable.
        env.setdefault("MC_DEV_RUN", "1")
        if not env_bool("MC_DEV_RUN", True, environ=env):
            try:
                require_production_variables(environ=env)
            except ImproperlyConfigured as error:
                raise StartupFailed(str(error)) from None
        if not env.get("DATABASE_URL") or not env.get("REDIS_URL"):
            self.services = embedded.Services.at(self.data_dir)
            print("Starting embedded PostgreSQL and Redis under", self.data_dir, flush=True)
            urls = self.services.ensure_running()
            env.setdefault("DATABASE_URL", urls["DATABASE_URL"])
            if not env.get("REDIS_URL"):
                env["REDIS_URL"] = urls["REDIS_URL"]
        env.setdefault("SIMULATOR_URL", f"http://127.0.0.1:{env['SIM_PORT']}")
        env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{env['PORT']}")
        env.setdefault("RECEIPTS_BASE_URL", f"http://127.0.0.1:{env['RECEIPTS_PORT']}")

        metrics_dir = self.data_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

        print("Applying migrations…", flush=True)
        _manage("migrate", "--noinput", env=env)
        _create_operator_once(env, self.data_dir)
        _manage("configure_simulator_providers", env=env)
        # The simulator pushes Aliyun/Tencent reports (unsigned) to a URL carrying the providers' secret token.
        receipt_token = _manage("configure_simulator_receipts", env=env).split()
        if not receipt_token:
            raise StartupFailed("manage.py configure_simulator_receipts printed no receipt token")
        env.setdefault("SIM_RECEIPT_BASE_URL", f"{env['RECEIPTS_BASE_URL']}/api/v1/receipts/t/{receipt_token[-1]}/")
        _manage("check", env=env)

        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children = _children(env)
        for child in self.children:
            _start(child, env, log_dir)

        deadline = time.monotonic() + 120
        checks = {
            "API": f"http://127.0.0.1:{env['PORT']}/readyz",
            "Flower": f"http://127.0.0.1:{env['FLOWER_PORT']}/healthcheck",
            "provider simulator": f"http://127.0.0.1:{env['SIM_PORT']}/_sim/providers",
        }
        for name, url in checks.items():
            if not _wait_http(url, deadline) and not self.stopping:
                print(f"{name} did not come up; see {log_dir}", file=sys.stderr)
                return 1
        if self.stopping:
            return 0
        print(
            "\nMessaging Center is up:\n"
            f"  API          http://127.0.0.1:{env['PORT']}/api/v1/   (docs: /api/docs/, health: /readyz, /metrics)\n"
            f"  Admin        http://127.0.0.1:{env['PORT']}/admin/\n"
            f"  Receipts     {env['RECEIPTS_BASE_URL']}/api/v1/receipts/<provider>   (providers' status reports)\n"
            f"  Flower       http://127.0.0.1:{env['FLOWER_PORT']}/\n"
            f"  Simulator    http://127.0.0.1:{env['SIM_PORT']}/_sim/messages\n"
            f"  Logs         {log_dir}/\n"
            "  Create an account: .venv/bin/python manage.py create_account NAME\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while not self.stopping:
            self._supervise(env, log_dir)
            time.sleep(0.5)
        return 0

    def _supervise(self, env: dict[str, str], log_dir: Path) -> None:
        """A child that died is started again, with backoff, the others untouched: a fault costs one
        process seconds, never the stack (only Ctrl-C or SIGTERM stops everything)."""
        now = time.monotonic()
        for child in self.children:
            assert child.process is not None
            if child.restart_at is not None:
                if now >= child.restart_at and not self.stopping:
                    child.restart_at = None
                    try:
                        _start(child, env, log_dir)
                    except OSError as error:  # no process could be made (yet): try again later
                        child.restarts += 1
                        child.restart_at = now + child.restart_delay()
                        print(f"{child.name} could not be started ({error}); trying again", file=sys.stderr, flush=True)
                        continue
                    print(f"{child.name} started again (restart {child.restarts})", file=sys.stderr, flush=True)
                continue
            code = child.process.poll()
            if code is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)  # what is left of its group (a worker's pool children)
            child.restarts = 1 if now - child.started_at >= HEALTHY_RUN_SECONDS else child.restarts + 1
            child.restart_at = now + child.restart_delay()
            print(
                f"{child.name} exited with {code}; starting it again in {child.restart_delay():.0f} s "
                f"(see {log_dir / (child.name + '.log')})",
                file=sys.stderr,
                flush=True,
            )

    def _stop_all(self) -> None:
        print("\nStopping…", flush=True)
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        # A child that died since the last supervision round: what is left of its group (once handled,
        # its group was killed then, and the number may have been reused since).
        for child in self.children:
            if child.process is not None and child.process.poll() is not None and child.restart_at is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.services is not None:
            self.services.stop()
        print("Stopped.", flush=True)


def main() -> int:
    return Launcher().run()


if __name__ == "__main__":
    sys.exit(main())
