"""The scenarios: traffic, a fault while it flows, then the check. Each scenario returns the load it
sent, what it did, and any wrong its own checks found; `run_scenario` waits for quiescence, sends a
probe through the recovered stack, and joins the API's view with the simulator's."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from devstack.chaos import contract, faults
from devstack.chaos.checker import Figures, check
from devstack.chaos.stack import ALL_SMS, DOMESTIC_SMS, Stack
from devstack.chaos.traffic import Api, Context, Load, drive, fresh_number

SETTLE_SECONDS = 150
PROBE_SECONDS = 90
# Past any visibility timeout (settings allow 600 s and up; the default run has 3600 s).
AGED_SECONDS = 10 * 86400


@dataclass
class Outcome:
    name: str
    did: str
    figures: Figures
    probe: bool
    seconds: float
    answers: Counter[str] = field(default_factory=Counter)


# A scenario: traffic and fault → (load, what was done, wrongs its own checks found).
Run = Callable[[Context], tuple[Load, str, list[str]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Run
    # Verification codes must go out this fast (accept -> sent, p99, seconds) despite the fault.
    code_p99_limit: float | None = None


STEADY = {"sms": 200, "codes": 20, "seconds": 20.0}
BURST = {"sms": 300, "codes": 20, "seconds": 0.0}


def during(ctx: Context, traffic: dict[str, float], fault: Callable[[], str], *, at: float) -> tuple[Load, str, list[str]]:
    """Traffic in a thread; the fault `at` seconds in (it may take a while); both finished."""
    result: list[Load] = []
    sender = threading.Thread(target=lambda: result.append(drive(ctx.api, **traffic)))  # type: ignore[arg-type]
    sender.start()
    time.sleep(at)
    try:
        did = fault()
    except faults.FaultFailed as error:
        did = f"fault not done: {error}"
    sender.join()
    return result[0], did, ([] if not did.startswith("fault not done") else [did])


def provider_fault(providers: tuple[str, ...], what: str, **behavior: object) -> Run:
    def run(ctx: Context) -> tuple[Load, str, list[str]]:
        ctx.stack.sim_behave(providers, **behavior)
        try:
            load = drive(ctx.api, **STEADY)  # type: ignore[arg-type]
        finally:
            ctx.stack.sim_heal()
        return load, what, []

    return run


def no_fault(ctx: Context) -> tuple[Load, str, list[str]]:
    return drive(ctx.api, sms=200, codes=20, seconds=10), "nothing", []


def kill_twice(kill: Callable[[Stack, str], str], workers: tuple[str, str]) -> Run:
    """Two kills into a burst, a few seconds apart: the worker of the burst's SMS (the high lane),
    then, once the launcher brought it back, the one of its codes. Providers answer after 0.8 s
    meanwhile, so that every kill lands on sends in flight."""

    def fault(stack: Stack) -> str:
        first = kill(stack, workers[0])
        faults.wait_for_worker(stack, workers[0])
        time.sleep(2)
        return f"{first}; then: {kill(stack, workers[1])} (providers 0.8 s slow)"

    def run(ctx: Context) -> tuple[Load, str, list[str]]:
        ctx.stack.sim_behave(ALL_SMS, latency_ms=800)
        try:
            return during(ctx, BURST, lambda: fault(ctx.stack), at=2)
        finally:
            ctx.stack.sim_heal()

    return run


def web_kills(ctx: Context) -> tuple[Load, str, list[str]]:
    """Sends of two numbers each, ~15 requests a second from 6 clients: a kill lands mid-request."""

    def fault() -> str:
        first = faults.kill_web(ctx.stack)
        time.sleep(6)
        return f"{first}; 6 s later {faults.kill_web(ctx.stack)}"

    return during(ctx, {**STEADY, "batch": 2, "seconds": 12.0}, fault, at=3)


def redis_killed(keep_data: bool) -> Run:
    return lambda ctx: during(ctx, STEADY, lambda: faults.redis_kill(ctx.stack, down_seconds=5, keep_data=keep_data), at=6)


def redis_flushed(ctx: Context) -> tuple[Load, str, list[str]]:
    return during(ctx, STEADY, lambda: faults.redis_flushall(ctx.stack), at=6)


def postgres_during_accept(ctx: Context) -> tuple[Load, str, list[str]]:
    return during(ctx, {**STEADY, "seconds": 30.0}, lambda: faults.postgres_down(ctx.stack, down_seconds=15), at=5)


def postgres_during_delivery(ctx: Context) -> tuple[Load, str, list[str]]:
    """A burst accepted first and slowed at the providers (0.5 s a call), then the database goes."""
    ctx.stack.sim_behave(ALL_SMS, latency_ms=500)
    try:
        load = drive(ctx.api, **BURST)  # type: ignore[arg-type]
        time.sleep(1)
        did = faults.postgres_down(ctx.stack, down_seconds=15)
    finally:
        ctx.stack.sim_heal()
    return load, f"{did}, 1 s after a burst was accepted (providers 0.5 s slow)", []


def retry_past_visibility(ctx: Context) -> tuple[Load, str, list[str]]:
    """Every SMS provider fails, so sends wait on countdown retries the workers hold unacknowledged;
    their hand-out time is aged past any visibility timeout twice (kombu restores such tasks to the
    queue: each is then handed out twice), then the providers recover."""
    ctx.stack.sim_behave(ALL_SMS, fail_rate=1.0, error="http_500")
    try:
        load = drive(ctx.api, sms=150, codes=10, seconds=0)
        aged = []
        for _ in range(2):
            time.sleep(6)
            aged.append(faults.age_unacked(ctx.stack, seconds=AGED_SECONDS))
        time.sleep(12)  # the transport restores aged tasks every few seconds
    finally:
        ctx.stack.sim_heal()
    return load, f"providers down 24 s; held retries aged {AGED_SECONDS // 86400} days, twice ({aged[0]}, {aged[1]} tasks)", []


SCENARIOS = [
    Scenario("no fault", no_fault),
    Scenario("SIGKILL pool child", kill_twice(faults.kill_pool_child, ("high", "critical"))),
    Scenario("SIGKILL worker", kill_twice(faults.kill_worker, ("high", "critical"))),
    Scenario("SIGKILL beat", lambda ctx: during(ctx, STEADY, lambda: faults.kill_beat(ctx.stack), at=5)),
    Scenario("SIGKILL web mid-request", web_kills),
    Scenario("Redis killed, AOF kept", redis_killed(True)),
    Scenario("Redis killed, data lost", redis_killed(False)),
    Scenario("Redis FLUSHALL", redis_flushed),
    Scenario("PostgreSQL down 15 s, accept", postgres_during_accept),
    Scenario("PostgreSQL down 15 s, delivery", postgres_during_delivery),
    Scenario("providers 500 (50 %)", provider_fault(DOMESTIC_SMS, "domestic SMS 50 % HTTP 500", fail_rate=0.5, error="http_500")),
    Scenario(
        "providers 429 (50 %)", provider_fault(DOMESTIC_SMS, "domestic SMS 50 % throttled", fail_rate=0.5, error="throttle")
    ),
    Scenario(
        "timeout after accept (30 %)",
        provider_fault(DOMESTIC_SMS, "domestic SMS: 30 % accepted, answered after 30 s", fail_rate=0.3, error="timeout"),
    ),
    Scenario(
        "Tencent 10 s slow", provider_fault(("tencent",), "Tencent answers after 10 s", latency_ms=10_000), code_p99_limit=2.0
    ),
    Scenario(
        "garbage answers (30 %)",
        provider_fault(DOMESTIC_SMS, "domestic SMS: 30 % accepted, answered with HTML", fail_rate=0.3, error="garbage"),
    ),
    Scenario("retry past visibility timeout", retry_past_visibility),
    Scenario("50 x one Idempotency-Key", contract.one_idempotency_key),
    Scenario("200 sends, quota 100", contract.quota),
    Scenario("forged, replayed receipts", contract.receipts),
]


def wait_quiet(api: Api, since: dt.datetime, numbers: set[str], seconds: float) -> None:
    """Until none of `numbers` has a message made since `since` that waits for a provider (twice in
    a row: a retry moves through `sending`), or the deadline."""
    deadline = time.monotonic() + seconds
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        pending = api.pending_numbers(since)
        quiet = quiet + 1 if pending is not None and not pending & numbers else 0
        time.sleep(2)


def probe(ctx: Context) -> bool:
    """After the fault, with nobody restarting anything: an SMS and a code sent now reach a provider."""
    phones = [fresh_number(), fresh_number()]
    deadline = time.monotonic() + PROBE_SECONDS
    status, _ = ctx.api.send(phones[:1], deadline=deadline)
    code_id = ctx.api.verify(phones[1], deadline=deadline)
    if status != 202 or code_id is None:
        return False
    while time.monotonic() < deadline:
        if all(ctx.stack.sim("GET", f"/_sim/messages?to={quote(phone)}")["results"] for phone in phones):
            return True
        time.sleep(1)
    return False


def run_scenario(ctx: Context, scenario: Scenario) -> Outcome:
    started = time.monotonic()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    answers_before = Counter(ctx.api.answers)
    print(f"- {scenario.name} ...", flush=True)
    load, did, wrongs = scenario.run(ctx)
    account = load.account or ctx.api
    wait_quiet(account, since, {item.number for item in load.expected}, SETTLE_SECONDS)
    probed = probe(ctx)
    figures = check(load.expected, messages(account, since), ctx.stack.sim_records())
    answers = Counter(ctx.api.answers)
    answers.subtract(answers_before)
    answers = +answers
    wrongs += answer_wrongs(answers)
    limit, slowest = scenario.code_p99_limit, figures.code_p99
    if limit is not None and slowest is not None and slowest >= limit:
        wrongs.append(f"verification codes accept -> sent p99 {slowest:.1f} s (at most {limit:.0f} s)")
    if not ctx.stack.launcher_alive():
        wrongs.append("the launcher is gone")
    figures.problems.extend(wrongs)
    outcome = Outcome(scenario.name, did, figures, probed, time.monotonic() - started, answers)
    print(f"  {did}; {figures.messages} messages checked in {outcome.seconds:.0f} s", flush=True)
    return outcome


def answer_wrongs(answers: Counter[str]) -> list[str]:
    """API answers outside the contract: a 500, an error without the contract's body, a bare 503."""
    return [
        f"{count} answers {answer} (the contract: 503 unavailable with Retry-After)"
        for answer, count in sorted(answers.items())
        if answer.startswith("500") or "off-contract" in answer
    ]


def messages(api: Api, since: dt.datetime) -> list[dict[str, object]]:
    """Every message made since `since`, as the API lists it (asked again while the API recovers)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return list(api.messages_since(since))
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
