"""`make bench`: every scenario, one after the other, each on a stack of its own (started fresh on
`.data/bench`). `BENCH=throughput` or `BENCH=history` (comma-separated) runs only those;
`BENCH_HISTORY=200000` seeds the history scenario with fewer old messages than its 5,000,000."""

from __future__ import annotations

import os
import sys

SCENARIOS = ("throughput", "history")


def main() -> None:
    chosen = [name.strip() for name in os.environ.get("BENCH", ",".join(SCENARIOS)).split(",") if name.strip()]
    if unknown := sorted(set(chosen) - set(SCENARIOS)):
        raise SystemExit(f"BENCH: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    for name in chosen:
        print(f"=== {name} ===", flush=True)
        if name == "throughput":
            from bench import throughput

            throughput.main()
        else:
            from bench import history

            history.main(["--history", os.environ["BENCH_HISTORY"]] if os.environ.get("BENCH_HISTORY") else [])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
