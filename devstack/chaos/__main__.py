"""`python -m devstack.chaos [--only NAME …] [--soak DURATION]` (`make chaos`).

Starts the default run on `.data/chaos` (wiped first) with ports of its own, runs every scenario
once (or those whose name holds an `--only` text), prints the table and exits 1 when a scenario
found anything wrong. `--soak 1h` instead repeats the scenarios, one after another, for that long
under a steady stream of SMS and codes of its own, and checks that stream too at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import sys
import threading
import time
from pathlib import Path

from devstack import embedded
from devstack.background import BASE_DIR
from devstack.chaos import report, stack
from devstack.chaos.checker import check
from devstack.chaos.scenarios import SCENARIOS, SETTLE_SECONDS, Outcome, Scenario, answer_wrongs, run_scenario, wait_quiet
from devstack.chaos.scenarios import messages as api_messages
from devstack.chaos.traffic import Api, Context, Load, drive

UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 20m or 1h")
    return float(match[1]) * UNITS[match[2] or "s"]


def _chosen(only: list[str]) -> list[Scenario]:
    chosen = [s for s in SCENARIOS if not only or any(text.lower() in s.name.lower() for text in only)]
    if not chosen:
        raise SystemExit(f"no scenario matches {only}; there are: {', '.join(s.name for s in SCENARIOS)}")
    return chosen


def _soak(ctx: Context, scenarios: list[Scenario], seconds: float) -> list[Outcome]:
    """The scenarios in turn until `seconds` have passed, under a steady stream (2 SMS/s, a code
    every 5 s) checked at the end like a scenario of its own."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    started = time.monotonic()
    stream, stop = Load(), threading.Event()
    stream_api = Api(ctx.api.base_url, ctx.api.key)  # its answers counted apart from the scenarios'

    def steady() -> None:
        while not stop.is_set():
            stream.add(drive(stream_api, sms=20, codes=2, seconds=10, threads=2).expected)

    sender = threading.Thread(target=steady, daemon=True)
    sender.start()
    outcomes = []
    turn = 0
    while time.monotonic() - started < seconds:
        outcomes.append(run_scenario(ctx, scenarios[turn % len(scenarios)]))
        turn += 1
    stop.set()
    sender.join()
    wait_quiet(ctx.api, since, {item.number for item in stream.expected}, SETTLE_SECONDS)
    figures = check(stream.expected, api_messages(ctx.api, since), ctx.stack.sim_records())
    figures.problems += answer_wrongs(stream_api.answers)
    did = f"{turn} faults in {time.monotonic() - started:.0f} s"
    outcomes.append(Outcome("steady stream, whole soak", did, figures, True, time.monotonic() - started, stream_api.answers))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run the scenarios whose name holds this text")
    parser.add_argument("--soak", type=duration, metavar="DURATION", help="repeat the faults for this long (e.g. 1h)")
    parser.add_argument("--work-dir", type=Path, default=BASE_DIR / ".data" / "chaos")
    args = parser.parse_args(argv)
    scenarios = _chosen(args.only)

    started = time.monotonic()
    embedded.Services.at(args.work_dir / "data").stop()  # a stack a crashed run left behind
    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    with stack.running(args.work_dir) as running:
        api = Api(running.api_url, running.create_account("chaos"))
        api.templates()
        ctx = Context(running, api)
        outcomes = _soak(ctx, scenarios, args.soak) if args.soak else [run_scenario(ctx, s) for s in scenarios]
        print()
        print(report.table(outcomes, time.monotonic() - started), flush=True)
    print(f"\nlogs: {args.work_dir}/data/logs/, {args.work_dir}/launcher.log")
    return 0 if all(o.figures.clean and o.probe for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
