"""The production units (deploy/systemd) run what the default run runs, each restarted by systemd
whatever its exit, as the launcher restarts its children."""

from __future__ import annotations

import configparser
import shlex

import pytest

from devstack.launcher import _children
from tests.settings import BASE_DIR

UNITS = BASE_DIR / "deploy" / "systemd"
SETTINGS_ENV = dict.fromkeys(
    ("PORT", "RECEIPTS_PORT", "FLOWER_PORT", "SIM_PORT", "WEB_WORKERS", "WEB_THREADS", "RECEIPTS_THREADS"), "1"
) | {"WEB_ACCESS_LOG": "0", "CRITICAL_WORKERS": "4", "HIGH_WORKERS": "4", "BULK_WORKERS": "2"}
PRODUCTION_CHILDREN = [c for c in _children(SETTINGS_ENV) if c.name != "simulator"]  # the simulator is the dev run's


def _unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / f"mc-{name}.service")
    assert parser.has_section("Service"), f"deploy/systemd/mc-{name}.service is missing"
    return parser["Service"]


def _role(argv: list[str]) -> tuple[str, ...]:
    """What a process is: its program and app, and for a worker its queues and concurrency."""
    program = argv[0].rsplit("/", 1)[-1]
    if program == "granian":
        return (program, argv[-1])
    command = next(a for a in argv if a in {"worker", "beat", "flower"})
    options = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i] in {"-Q", "-c"}}
    return (program, command, options.get("-Q", ""), options.get("-c", ""))


@pytest.mark.parametrize("child", PRODUCTION_CHILDREN, ids=lambda c: c.name)
def test_each_process_of_the_default_run_has_a_unit_restarted_always(child) -> None:
    service = _unit(child.name)
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"] == "/etc/messaging-center/env"
    assert int(service["Nice"]) == child.niceness
    assert _role(shlex.split(service["ExecStart"])) == _role(child.argv)


def test_the_target_starts_every_unit() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(UNITS / "messaging-center.target")
    wanted = set(parser["Unit"]["Wants"].split())
    assert wanted == {f"mc-{c.name}.service" for c in PRODUCTION_CHILDREN}
    assert sorted(p.name for p in UNITS.glob("mc-*.service")) == sorted(wanted)
