"""Every run-engine benchmark in turn (about 15 minutes on the 2-core machine; ``--quick``: about 3).

    python benchmarks/bench_run_all.py [--quick] [--no-pin]

Runs ``bench_run_latency.py``, ``bench_run_cpu.py``, ``bench_run_ratelimit.py``, ``bench_run_faults.py
--reps 1`` and ``bench_run_million.py`` as subprocesses with their defaults; each prints its figures and
saves them to ``benchmarks/data/run_results/NAME.json``; BENCHMARKS.md ("Run engine") quotes those files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ["bench_run_latency.py"],
    ["bench_run_cpu.py"],
    ["bench_run_ratelimit.py"],
    ["bench_run_faults.py", "--reps", "1"],
    ["bench_run_million.py"],
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    extra = [flag for flag, on in (("--quick", args.quick), ("--no-pin", args.no_pin)) if on]
    start = time.perf_counter()
    failed = []
    for bench in BENCHMARKS:
        print(f"\n=== {' '.join(bench + extra)}", flush=True)
        began = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / bench[0]), *bench[1:], *extra])
        print(f"=== {bench[0]}: exit {code}, {time.perf_counter() - began:.0f} s", flush=True)
        if code:
            failed.append(bench[0])
    print(f"\nall done in {time.perf_counter() - start:.0f} s" + (f"; errors in {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
