"""Latency-bound run: 5,000 jobs at 200 +/- 50 ms, concurrency 100, against the bare-SDK loop.

    python benchmarks/bench_run_latency.py [--quick] [--reps 3] [--jobs 5000] [--no-pin]

The fake server (its own process, pinned to CPU 1) answers after ``150 + uniform(0, 100)`` ms (``--latency-ms
150 --jitter-ms 100``: 200 ms on average). The ideal rate is concurrency / mean latency = 500 jobs/s at
concurrency 100. Target (the issue): batchrunner >= 95% of the ideal rate. The rate is judged on the active
span (the server's first request to its last answer: the run's steady state); the wall time from process
start to exit (start-up, submit and shutdown included) is reported next to it. See ``harness/clients.py`` for
both clients and every measure.
"""

from __future__ import annotations

from harness import report
from harness.compare import compare
from harness.options import make_parser

TARGET = 0.95
LATENCY_MS, JITTER_MS = 150.0, 100.0


def main() -> None:
    parser = make_parser(__doc__, reps=3)
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    jobs, reps = (1000, 1) if args.quick else (args.jobs, args.reps)
    result = compare(
        name="latency",
        server_args=["--latency-ms", str(LATENCY_MS), "--jitter-ms", str(JITTER_MS)],
        jobs=jobs,
        reps=reps,
        concurrency=args.concurrency,
        pinned=not args.no_pin,
        profile=args.profile,
        what_ifs=args.what_if,
    )
    ideal = args.concurrency / ((LATENCY_MS + JITTER_MS / 2) / 1000)
    ours, base = result["batchrunner"], result["baseline"]
    result["ideal_rate"] = ideal
    result["verdict"] = {
        "ours_active_vs_ideal": ours["rate_active"] / ideal,
        "baseline_active_vs_ideal": base["rate_active"] / ideal,
        "ours_wall_vs_ideal": ours["rate_wall"] / ideal,
        "baseline_wall_vs_ideal": base["rate_wall"] / ideal,
        "pass": ours["rate_active"] / ideal >= TARGET and ours["all_done"] and ours["duplicates"] == 0,
    }
    report.print_pair(result)
    v = result["verdict"]
    print(
        f"ideal {ideal:.0f} jobs/s; active: batchrunner {v['ours_active_vs_ideal']:.1%}, bare loop "
        f"{v['baseline_active_vs_ideal']:.1%}; wall: batchrunner {v['ours_wall_vs_ideal']:.1%}, bare loop "
        f"{v['baseline_wall_vs_ideal']:.1%}; target >= {TARGET:.0%} -> {report.verdict(v['pass'])}"
    )
    print(f"saved {report.save(report.result_name('latency', args), result)}")


if __name__ == "__main__":
    main()
