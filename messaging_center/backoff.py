"""How long to wait before trying again: one exponential schedule for provider retries and status callbacks."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, *, base: float, cap: float, jitter: bool) -> float:
    """`base`, twice `base`, four times `base` … for attempts 1, 2, 3 …, capped at `cap`. With `jitter`, a
    random point in the upper half of the step, so that a burst of failures does not retry in step."""
    step = min(cap, base * 2 ** max(0, attempt - 1))
    return step * random.uniform(0.5, 1.0) if jitter else step
