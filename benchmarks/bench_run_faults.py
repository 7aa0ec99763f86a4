"""Faults: 5% 429 + 5% 500 + 1% connection resets, against the same run without faults.

    python benchmarks/bench_run_faults.py [--quick] [--reps 2] [--jobs 5000] [--cap 45] [--no-cap]
                                          [--what-if NAME=LAUNCHER-ARGS ...]

Three fake servers (pinned to CPU 1), all answering in 200 +/- 50 ms (``--latency-ms 150 --jitter-ms 100``)
with ``--seed 1`` and reset before every run, so every client meets the same faults on the same prompts
and attempts:

- ``clean``: no faults (the reference);
- ``faults``: ``--p429 0.05 --p500 0.05 --preset 0.01`` with the server's default Retry-After of 1 s;
- ``faults-100ms``: the same with ``--retry-after-s 0.1`` (``retry-after-ms: 100``; real OpenAI 429s carry
  tens to hundreds of milliseconds).

Clients: the bare-SDK loop retrying on its own (up to 8 retries; ``harness/baseline_client.py`` says
exactly how) and ``batchrunner run`` (its defaults: 6 attempts, the provider limiter's 429 pause and
AIMD). Targets (the issue): every job done, 0 duplicates (answers per prompt, from the server's books),
wall <= 1.3x the client's own fault-free wall. A batchrunner run that is still going after ``--cap``
seconds is stopped with SIGINT (the time it then takes to exit is reported) and its wall is projected as
``cap * jobs / succeeded``; ``--no-cap`` lets it finish. ``t90``/``t99``/``t100``: seconds from the first
request until 90/99/100% of the jobs were answered (the retry tail is ``t100 - t99``).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from harness import machine, report, rounds, snapshot
from harness.clients import RunResult, run_baseline, run_ours
from harness.compare import Case, what_if_clients
from harness.manifests import write_manifest
from harness.measures import median
from harness.options import make_parser
from harness.paths import DATA
from harness.server import Server

TARGET = 1.3
LATENCY = ["--latency-ms", "150", "--jitter-ms", "100"]
FAULTS = ["--p429", "0.05", "--p500", "0.05", "--preset", "0.01"]
SERVERS = {
    "clean": LATENCY,
    "faults": [*LATENCY, *FAULTS],
    "faults-100ms": [*LATENCY, *FAULTS, "--retry-after-s", "0.1"],
}
MARKS = ("90%", "99%", "100%")


def projected_wall(run: dict[str, Any]) -> float:
    """The wall time, or for a capped run, the cap scaled to every job (a rough linear projection)."""
    if not run["capped"]:
        return float(run["wall_s"])
    return float((run["wall_s"] - (run["stop_s"] or 0)) * run["jobs"] / max(run["succeeded"], 1))


def parse_args() -> argparse.Namespace:
    parser = make_parser(__doc__, reps=2)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--cap", type=float, default=45.0, help="seconds before a run is stopped")
    parser.add_argument("--no-cap", action="store_true")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only clients whose name contains TEXT",
    )
    return parser.parse_args()


def make_clients(
    args: argparse.Namespace, case: Case, servers: dict[str, Server]
) -> dict[str, Callable[[], RunResult]]:
    """Per server: the bare loop (8 retries, no cap), batchrunner (capped), each what-if (not on clean)."""
    clients: dict[str, Callable[[], RunResult]] = {}
    for name, server in servers.items():
        clients[f"baseline/{name}"] = functools.partial(
            run_baseline, case.manifest, server, concurrency=case.concurrency, retries=8, pinned=case.pinned
        )
        clients[f"batchrunner/{name}"] = functools.partial(
            run_ours,
            case.manifest,
            server,
            concurrency=case.concurrency,
            pinned=case.pinned,
            cap_s=case.cap_s,
        )
        if name != "clean":
            clients.update(what_if_clients(case, server, args.what_if, suffix=f"/{name}"))
    if args.only:
        clients = {name: run for name, run in clients.items() if any(text in name for text in args.only)}
    return clients


def judge(name: str, figures: dict[str, Any], summaries: dict[str, Any], jobs: int) -> dict[str, Any]:
    """One client/server's verdict, printed as a row of the table."""
    who, _, server = name.partition("/")
    runs = figures["runs"]
    clean = summaries.get(f"{'baseline' if who == 'baseline' else 'batchrunner'}/clean")
    wall = median([projected_wall(run) for run in runs])
    ratio = (wall or 0) / clean["wall_s"] if clean else float("nan")
    capped = any(run["capped"] for run in runs)
    done = median([run["succeeded"] for run in runs])
    tails = [median([run["extra"]["done_at_s"].get(mark) for run in runs]) for mark in MARKS]
    ok = server == "clean" or (figures["all_done"] and figures["duplicates"] == 0 and ratio <= TARGET)
    verdict = {
        "wall_s": wall,
        "projected": capped,
        "x_clean": ratio,
        "succeeded": done,
        "duplicates": figures["duplicates"],
        "stop_s": median([run["stop_s"] for run in runs]),
        "done_at_s": dict(zip(MARKS, tails, strict=True)),
        "pass": ok,
    }
    requests = median([run["requests"] for run in runs])
    refused = median([run["by_status"].get("429", 0) for run in runs])
    print(
        f"{name:34s} {wall:8.1f} {ratio:8.2f} {done:>5.0f}/{jobs:<5d} {figures['duplicates']:4d} "
        f"{requests:9.0f} {refused:5.0f} {figures['cpu_s']:6.1f} "
        + " ".join(f"{tail:5.1f}" if tail is not None else "    -" for tail in tails)
        + "  "
        f"{'-' if server == 'clean' else report.verdict(ok)}{' (projected)' if capped else ''}"
    )
    if capped:
        print(f"{'':34s} stopped at the cap; SIGINT to exit took {verdict['stop_s']:.1f} s")
    return verdict


def run_rounds(
    reps: int, servers: dict[str, Server], clients: dict[str, Callable[[], RunResult]]
) -> dict[str, list[RunResult]]:
    """Every server up for the whole benchmark; ``reps`` alternating rounds of the clients."""
    for server in servers.values():
        server.__enter__()
    try:
        return rounds.alternate(reps, clients)
    finally:
        for server in servers.values():
            server.__exit__()


def main() -> None:
    args = parse_args()
    snapshot.activate()
    jobs, reps = (1000, 1) if args.quick else (args.jobs, args.reps)
    cap = None if args.no_cap else (10.0 if args.quick else args.cap)
    pinned = not args.no_pin
    manifest = write_manifest(DATA / f"run-faults-{jobs}.jsonl", jobs, f"faults-{jobs}")
    case = Case("faults", manifest, args.concurrency, pinned, cap_s=cap)
    info = machine.machine_info(pinned)
    print(f"faults: {jobs:,} jobs, concurrency {args.concurrency}, cap {cap} s, {reps} rep(s)")
    servers = {name: Server(server_args, pinned=pinned) for name, server_args in SERVERS.items()}
    results = run_rounds(reps, servers, make_clients(args, case, servers))
    info["load_after"] = machine.loadavg()
    summaries = {name: rounds.summary(runs) for name, runs in results.items()}
    print(
        f"\n{'client/server (median)':34s} {'wall s':>8s} {'x clean':>8s} {'done':>11s} {'dup':>4s} "
        f"{'requests':>9s} {'429s':>5s} {'cpu s':>6s}  verdict"
    )
    verdict = {name: judge(name, figures, summaries, jobs) for name, figures in summaries.items()}
    payload = {
        "name": "faults",
        "machine": info,
        "jobs": jobs,
        "concurrency": args.concurrency,
        "servers": SERVERS,
        "cap_s": cap,
        "clients": summaries,
        "verdict": verdict,
    }
    print(f"saved {report.save(report.result_name('faults', args), payload)}")


if __name__ == "__main__":
    main()
