"""Hedged sends: a provider call of a lane with a call deadline (settings.PROVIDER_CALL_DEADLINE_MS;
verification codes by default) still unanswered at its deadline is made again through another provider.

Both calls belong to the same attempt of the same message: the attempt count does not move, so the
finish stays the one conditional UPDATE on status and attempt, made once, by the first call that the
provider accepted. The other call is left to end on its send thread (bounded by the adapter's HTTP
timeouts) and its answer is recorded as a `late_answer` event of that attempt, nothing more: an
acceptance means the person was sent the message twice (code `duplicate_send`, mc_duplicate_sends_total, and
mc_hedge_late_answers_total{outcome="accepted"}); a failure neither fails the message nor starts a
retry or a failover. Only when both calls fail does the attempt end as the first call's failure.

A call past its deadline marks its provider slow (routing.Health.mark_slow): for SLOW_SECONDS the
lanes with a deadline route around it (choice.route_messages), so that only the codes already on
their way to it wait for the deadline. Why that matters: a chunk waits for its hedge on its Celery
child, so slow calls at a rate above the lane's children per deadline (4 per 1.5 s by default) would
queue the codes behind them; and few send threads stay held by calls nobody waits for (each at most
the adapter's HTTP timeouts). A slow provider is not a failing one: the circuit breaker is not told."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import DatabaseError, connection

from apps.dispatch import routing
from apps.dispatch.delivery.choice import Attempt, Choice, group_into_calls, usable_routes
from apps.dispatch.events import DUPLICATE_SEND, record_events
from apps.dispatch.lanes import call_deadline
from apps.dispatch.providers.base import ProviderError, SendResult
from apps.dispatch.providers.errors import ACCEPTED
from messaging_center import metrics

logger = logging.getLogger(__name__)

Outcome = SendResult | ProviderError
LATE_ANSWER = "late_answer"
RECORD_TRIES = 3


@dataclass(eq=False)
class Call:
    """One provider call under way for its attempts; the future answers one outcome per attempt, in order."""

    route: routing.Route
    attempts: list[Attempt]
    future: concurrent.futures.Future[list[Outcome]]
    started: float = field(default_factory=time.monotonic)

    def outcome(self, index: int) -> Outcome | None:
        return self.future.result()[index] if self.future.done() else None

    def patience(self) -> float:
        """Seconds before the call is hedged, 0 for never: the shortest deadline of its attempts' lanes
        (a batch call may carry several lanes)."""
        return min((s for s in (call_deadline(a.message.priority) for a in self.attempts) if s), default=0.0)


@dataclass(eq=False)
class _Waiting:
    """An attempt waiting for its call, and for its hedge once there is one."""

    attempt: Attempt
    call: Call
    index: int
    hedge: Call | None = None
    hedge_index: int = 0

    def futures(self) -> list[concurrent.futures.Future[list[Outcome]]]:
        return [self.call.future] + ([self.hedge.future] if self.hedge else [])


def settle(calls: Sequence[Call], choice: Choice, start: Callable[[Choice], list[Call]]) -> None:
    """Waits for the calls and sets each attempt's outcome; a call past its lane's deadline is hedged:
    its attempts are grouped into calls through other providers and `start`ed. An attempt a hedge won
    gets the hedge's route."""
    waiting = [_Waiting(attempt, call, index) for call in calls for index, attempt in enumerate(call.attempts)]
    deadlines = {call: call.started + call.patience() for call in calls if call.patience()}
    while True:
        waiting = [w for w in waiting if not _settled(w)]
        if not waiting:
            return
        now = time.monotonic()
        due = {call for call, at in deadlines.items() if at <= now and not call.future.done()}
        if due:
            _hedge([w for w in waiting if w.call in due], choice, start)
        deadlines = {call: at for call, at in deadlines.items() if call not in due and not call.future.done()}
        pending = {future for w in waiting for future in w.futures() if not future.done()}
        timeout = max(0.0, min(deadlines.values()) - time.monotonic()) if deadlines else None
        concurrent.futures.wait(pending, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)


def _settled(waiting: _Waiting) -> bool:
    """Whether the attempt's outcome is known (set on it): the first acceptance of its call and its hedge
    wins; a failure waits for the other call; both failed → the first call's failure."""
    attempt, call, hedge = waiting.attempt, waiting.call, waiting.hedge
    first = call.outcome(waiting.index)
    if hedge is None:
        attempt.outcome = first
        return first is not None
    second = hedge.outcome(waiting.hedge_index)
    if isinstance(first, SendResult):
        attempt.outcome = first
        attempt.note = f"; no answer within {call.patience():.1f} s, so {hedge.route.name} was tried as well"
        _when_answered(hedge, waiting.hedge_index, attempt, call.route.name)
    elif isinstance(second, SendResult):
        attempt.route, attempt.outcome = hedge.route, second
        attempt.note = f"; {call.route.name} had not answered within {call.patience():.1f} s"
        _when_answered(call, waiting.index, attempt, hedge.route.name)
    elif first is not None and second is not None:
        attempt.outcome = first
        attempt.note = f"; {hedge.route.name}, tried as well after {call.patience():.1f} s: {second.code}"
    else:
        return False
    return True


def _hedge(late: list[_Waiting], choice: Choice, start: Callable[[Choice], list[Call]]) -> None:
    """The late calls' attempts of lanes with a deadline, through another usable provider whose circuit
    lets them through (none: the attempt waits for its call). Each miss counts against its provider."""
    missed: set[str] = set()
    hedges: dict[int, _Waiting] = {}
    attempts: list[Attempt] = []
    allowed: dict[str, set[str]] = {}
    for waiting in late:
        message = waiting.attempt.message
        if not call_deadline(message.priority):
            continue  # another lane's message in the same batch call waits for it
        slow = waiting.call.route.name
        missed.add(slow)
        if message.channel not in allowed:
            allowed[message.channel] = choice.health.allowed([r.name for r in routing.ROUTES.for_channel(message.channel)])
        view = routing.ROUTES.segment_view(message.segment, choice.demoted)
        candidates = [r for r in usable_routes(message, choice) if r.name != slow and r.name not in view.excluded]
        route = routing.choose(candidates, allowed=allowed[message.channel], segment=view)
        if route is not None:
            hedge = Attempt(message, route)
            hedges[id(hedge)] = waiting
            attempts.append(hedge)
    choice.health.mark_slow(sorted(missed))
    if not attempts:
        return
    grouped = Choice(choice.templates, choice.health)
    group_into_calls(grouped, attempts)
    for call in start(grouped):
        for index, hedge in enumerate(call.attempts):
            waiting = hedges[id(hedge)]
            waiting.hedge, waiting.hedge_index = call, index
    metrics.count(metrics.HEDGED_SENDS, ((w.attempt.message.priority, w.call.route.name) for w in hedges.values()))
    logger.info("%d message(s) hedged: %s", len(hedges), ", ".join(sorted({w.call.route.name for w in hedges.values()})))


# --- late answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Late:
    attempt: Attempt
    provider: str
    outcome: Outcome
    seconds: float
    winner: str


def _when_answered(loser: Call, index: int, attempt: Attempt, winner: str) -> None:
    """Records the answer of the call that lost the race once it comes (now, if it has)."""

    def answered(future: concurrent.futures.Future[list[Outcome]]) -> None:
        late = _Late(attempt, loser.route.name, future.result()[index], time.monotonic() - loser.started, winner)
        _late_answers().put(late)

    loser.future.add_done_callback(answered)


_recorder_lock = threading.Lock()
_recorder: tuple[int, queue.SimpleQueue[_Late]] | None = None


def _late_answers() -> queue.SimpleQueue[_Late]:
    """The process's queue of late answers, recorded by one thread of its own: the send thread that got
    the answer has no database connection, and the chunk that hedged has finished."""
    global _recorder
    pid = os.getpid()
    if _recorder is None or _recorder[0] != pid:
        with _recorder_lock:
            if _recorder is None or _recorder[0] != pid:
                answers: queue.SimpleQueue[_Late] = queue.SimpleQueue()
                threading.Thread(target=_record_forever, args=(answers,), name="late-answers", daemon=True).start()
                _recorder = (pid, answers)
    return _recorder[1]


def _record_forever(answers: queue.SimpleQueue[_Late]) -> None:
    while True:
        batch = [answers.get()]
        while not answers.empty():
            batch.append(answers.get())
        _record_late_answers(batch)


def _record_late_answers(batch: Sequence[_Late]) -> None:
    """One event per late answer, on a connection opened for it and closed after (late answers are rare;
    a connection kept idle between them would go stale across a database restart)."""
    outcomes = [(late.provider, _kind(late.outcome)) for late in batch]
    metrics.count(metrics.LATE_ANSWERS, outcomes)
    twice = [(late.attempt.message.channel,) for late in batch if isinstance(late.outcome, SendResult)]
    metrics.count(metrics.DUPLICATE_SENDS, twice)
    rows = [
        (late.attempt.message.id, LATE_ANSWER, *_code_and_detail(late), late.provider, late.attempt.message.attempt)
        for late in batch
    ]
    # The late call is a call of its provider's all the same: counted in the attempts rollup.
    reasons = {late.attempt.message.id: _reason(late.outcome) for late in batch}
    for tries in range(1, RECORD_TRIES + 1):
        try:
            record_events(rows, reasons=reasons)
            return
        except DatabaseError:
            logger.warning("late answers not recorded (try %d of %d)", tries, RECORD_TRIES, exc_info=True)
            time.sleep(tries)
        finally:
            connection.close()
    logger.error("%d late answer(s) lost: %s", len(batch), outcomes)


def _reason(outcome: Outcome) -> str:
    return ACCEPTED if isinstance(outcome, SendResult) else outcome.reason


def _kind(outcome: Outcome) -> str:
    if isinstance(outcome, SendResult):
        return "accepted"
    return "unknown" if outcome.ambiguous else "failed"


def _code_and_detail(late: _Late) -> tuple[str, str]:
    after = f"{late.provider} answered {late.seconds:.1f} s after the call started"
    if isinstance(late.outcome, SendResult):
        return (
            DUPLICATE_SEND,
            f"{after}: accepted as well ({late.outcome.provider_message_id}); "
            f"the person may get it twice ({late.winner} was first)",
        )
    error = f"{late.outcome.code}: {late.outcome.detail}" if late.outcome.detail else late.outcome.code
    if late.outcome.ambiguous:
        return "late_unknown", f"{after}: {error}; it may have sent it as well ({late.winner} was first)"
    return "late_failure", f"{after}: {error}; nothing changes ({late.winner} sent it)"
