"""Plain-text output of `mc`: aligned tables and a progress bar with rate and ETA (no dependency)."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from typing import TextIO


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, numeric: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; the columns listed in `numeric` are right-aligned."""
    cells = [[cell_text(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(widths[i]) if i in numeric else v.ljust(widths[i]) for i, v in enumerate(values)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def cell_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """`[#####-----] 4,000/10,000  40%  3,512 rows/s  ETA 0:02` on stderr.

    On a terminal the line is redrawn in place; otherwise (a log, a pipe) a line is printed at most
    once a second, and always at the end. The rate counts only this run's rows, so that a resumed
    run's ETA is not flattered by the rows a previous run did."""

    WIDTH = 30

    def __init__(self, total: int, *, done: int, stream: TextIO, enabled: bool = True, unit: str = "rows") -> None:
        self.total = total
        self.done = done
        self.unit = unit
        self.stream = stream
        self.enabled = enabled
        self.interactive = enabled and stream.isatty()
        self._start_done = done
        self._start = time.monotonic()
        self._printed_at = -math.inf
        self._last_width = 0

    def advance(self, count: int) -> None:
        self.done += count
        self.show()

    def line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(self.WIDTH * fraction)
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = (self.done - self._start_done) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return (
            f"[{bar}] {self.done:,}/{self.total:,} {fraction * 100:3.0f}%  "
            f"{rate:,.0f} {self.unit}/s  ETA {duration(eta) if self.done < self.total else '0:00'}"
        )

    def show(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = self.done >= self.total
        if self.interactive:
            text = self.line()
            self.stream.write("\r" + text + " " * max(0, self._last_width - len(text)))
            self._last_width = len(text)
        elif force or final or now - self._printed_at >= 1.0:
            self.stream.write(self.line() + "\n")
        else:
            return
        self._printed_at = now
        self.stream.flush()

    def close(self) -> None:
        """Ends the redrawn line, so that what follows starts on a line of its own."""
        if self.interactive and self._last_width:
            self.stream.write("\n")
            self.stream.flush()
            self._last_width = 0
