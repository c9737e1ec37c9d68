"""The table: one row per scenario run, the totals, then what each problem was."""

from __future__ import annotations

from collections.abc import Sequence

from devstack.chaos.checker import p99
from devstack.chaos.scenarios import Outcome

COLUMNS = (
    ("scenario", 31),
    ("msgs", 5),
    ("out", 5),
    ("failed", 6),
    ("lost", 5),
    ("stuck", 5),
    ("dup1", 5),
    ("dup2", 5),
    ("codes2", 6),
    ("code p99", 8),
    ("wrong", 5),
    ("probe", 5),
    ("secs", 5),
    ("", 4),
)
LEGEND = (
    "msgs: messages accepted and checked; out: reached a provider; failed: final without reaching one "
    "(the API says so); lost: accepted, the API says sent (or forgot it), no provider has it; stuck: "
    "still waiting after the deadline; dup1: one provider got one message twice; dup2: two providers "
    "sent one SMS to its person; codes2: verification codes that reached their person through two "
    "providers (hedging/failover, allowed); code p99: accept -> sent of the codes, seconds; wrong: other "
    "faults found (listed below); probe: an SMS and a code sent after the fault reached a provider, "
    "nobody having restarted anything."
)


def _row(values: Sequence[object]) -> str:
    return "  ".join(
        str(v).rjust(width) if i else str(v).ljust(width) for i, ((_, width), v) in enumerate(zip(COLUMNS, values, strict=True))
    )


def table(outcomes: Sequence[Outcome], total_seconds: float) -> str:
    lines = [_row([name for name, _ in COLUMNS]), _row(["-" * width for _, width in COLUMNS])]
    for o in outcomes:
        f = o.figures
        verdict = "ok" if f.clean and o.probe else "FAIL"
        values = [o.name, f.messages, f.out, f.failed, f.lost, f.stuck, f.dup_one_provider, f.dup_to_person, f.codes_twice]
        lines.append(
            _row([*values, _seconds(f.code_p99), len(f.problems), "yes" if o.probe else "NO", f"{o.seconds:.0f}", verdict])
        )
    sums = [sum(getattr(o.figures, name) for o in outcomes) for name in _SUMMED]
    wrong = sum(len(o.figures.problems) for o in outcomes)
    probes = sum(o.probe for o in outcomes)
    failing = sum(not (o.figures.clean and o.probe) for o in outcomes)
    lines.append(_row(["-" * width for _, width in COLUMNS]))
    lines.append(
        _row(
            [
                "total",
                *sums,
                _seconds(p99([s for o in outcomes for s in o.figures.code_seconds])),
                wrong,
                f"{probes}/{len(outcomes)}",
                f"{total_seconds:.0f}",
                f"{failing}✗" if failing else "ok",
            ]
        )
    )
    lines += ["", LEGEND, ""]
    for o in outcomes:
        details = o.figures.problems + o.figures.notes[:5]
        answers = ", ".join(f"{k}x{v}" for k, v in sorted(o.answers.items()))
        lines.append(f"{o.name}: {o.did}. API answers: {answers or 'none'}.")
        lines += [f"    {line}" for line in details]
        if len(o.figures.notes) > 5:
            lines.append(f"    … and {len(o.figures.notes) - 5} more like these")
    return "\n".join(lines)


_SUMMED = ("messages", "out", "failed", "lost", "stuck", "dup_one_provider", "dup_to_person", "codes_twice")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
