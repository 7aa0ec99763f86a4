"""CPU-bound run: the fake server answers at once (0 ms), so the client's CPU is the limit.

    python benchmarks/bench_run_cpu.py [--quick] [--reps 3] [--jobs 10000] [--no-pin] [--profile]

Both clients get one core each (CPU 0; the server has CPU 1). Target (the issue): batchrunner >= 85% of
the bare-SDK loop's jobs/s, judged on the wall time from process start to exit (what a user waits for;
submit included), with the active span (first request to last answer) and CPU per job next to it.
``--profile`` adds one py-spy run of each client (``pip install py-spy``) and prints where the time goes.
"""

from __future__ import annotations

from harness import report
from harness.compare import compare
from harness.options import make_parser

TARGET = 0.85


def main() -> None:
    parser = make_parser(__doc__, reps=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    jobs, reps = (2000, 1) if args.quick else (args.jobs, args.reps)
    result = compare(
        name="cpu",
        server_args=[],
        jobs=jobs,
        reps=reps,
        concurrency=args.concurrency,
        pinned=not args.no_pin,
        profile=args.profile,
        what_ifs=args.what_if,
    )
    ours, base = result["batchrunner"], result["baseline"]
    wall_ratio = ours["rate_wall"] / base["rate_wall"]
    result["verdict"] = {
        "wall_ratio": wall_ratio,
        "active_ratio": ours["rate_active"] / base["rate_active"],
        "cpu_per_job_ratio": ours["cpu_ms_per_job"] / base["cpu_ms_per_job"],
        "pass": wall_ratio >= TARGET and ours["all_done"] and ours["duplicates"] == 0,
    }
    report.print_pair(result)
    v = result["verdict"]
    print(
        f"batchrunner / bare loop: wall {v['wall_ratio']:.0%}, active {v['active_ratio']:.0%}, CPU per job "
        f"{v['cpu_per_job_ratio']:.0%}; target >= {TARGET:.0%} -> {report.verdict(v['pass'])}"
    )
    print(f"saved {report.save(report.result_name('cpu', args), result)}")


if __name__ == "__main__":
    main()
