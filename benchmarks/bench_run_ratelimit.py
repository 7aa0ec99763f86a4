"""Rate-limited run: the fake server enforces 3,600 RPM in 1 s windows (60 requests in any second) and
batchrunner is told ``--rpm 3600``; the bare-SDK loop, at the same concurrency, only retries its 429s.

    python benchmarks/bench_run_ratelimit.py [--quick] [--reps 3] [--jobs 1200] [--no-pin]

Server: ``--rpm 3600 --window-s 1 --latency-ms 150 --jitter-ms 100`` (200 ms answers). Targets (the issue):
batchrunner sustains >= 95% of the limit with <= 1% of its requests refused with 429. The sustained rate
is the least-squares slope of (send time, cumulative count) over the attempts that were answered with a 200
(``harness.measures.slope``), which a burst at either end of the run does not inflate; answers over the
active span are shown too.
The baseline retries a 429 after its ``retry-after-ms`` (``harness/baseline_client.py``): what a script
without a limiter gets.
"""

from __future__ import annotations

from typing import Any

from harness import report
from harness.compare import compare
from harness.measures import median
from harness.options import make_parser

LIMIT_RPM = 3600
RATE_TARGET, REFUSED_TARGET = 0.95, 0.01


def rate_figures(figures: dict[str, Any]) -> dict[str, float | None]:
    """Medians over one client's runs: sustained answered rate, its share of the limit, 429 share."""
    runs = figures["runs"]
    sustained = median([r["extra"]["ok_slope_per_s"] for r in runs]) or 0.0
    return {
        "sustained_per_s": sustained,
        "of_limit": sustained / (LIMIT_RPM / 60),
        "answers_per_active_s": figures["rate_active"],
        "refused_share": median([r["by_status"].get("429", 0) / max(r["requests"], 1) for r in runs]),
        "requests_per_job": median([r["requests"] / max(r["jobs"], 1) for r in runs]),
    }


def main() -> None:
    parser = make_parser(__doc__, reps=3)
    parser.add_argument("--jobs", type=int, default=1200)
    args = parser.parse_args()
    jobs, reps = (300, 1) if args.quick else (args.jobs, args.reps)
    result = compare(
        name="ratelimit",
        server_args=["--rpm", str(LIMIT_RPM), "--window-s", "1", "--latency-ms", "150", "--jitter-ms", "100"],
        jobs=jobs,
        reps=reps,
        concurrency=args.concurrency,
        pinned=not args.no_pin,
        rpm=LIMIT_RPM,
        baseline_retries=20,
        profile=args.profile,
        what_ifs=args.what_if,
    )
    verdict: dict[str, Any] = {}
    clients = {"baseline": result["baseline"], "batchrunner": result["batchrunner"], **result["what_ifs"]}
    for who, figures in clients.items():
        verdict[who] = rate_figures(figures)
        v = verdict[who]
        print(
            f"{who:20s} sustained {v['sustained_per_s']:6.2f} answered req/s = {v['of_limit']:.1%} of the "
            f"limit; answers/active {figures['rate_active']:.2f}/s; 429s {v['refused_share']:.2%} of requests"
        )
    ours = verdict["batchrunner"]
    verdict["pass"] = (
        ours["of_limit"] >= RATE_TARGET
        and ours["refused_share"] <= REFUSED_TARGET
        and result["batchrunner"]["all_done"]
    )
    result["verdict"] = verdict
    report.print_pair(result)
    passed = report.verdict(verdict["pass"])
    print(f"target >= {RATE_TARGET:.0%} of the limit, <= {REFUSED_TARGET:.0%} 429s -> {passed}")
    print(f"saved {report.save(report.result_name('ratelimit', args), result)}")


if __name__ == "__main__":
    main()
