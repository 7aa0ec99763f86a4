"""Issue 11's yardsticks: ``batchrunner run`` side by side with a bare aiohttp loop and the openai-cookbook's
parallel processor, against one fake server, the same manifest, in one invocation.

    python benchmarks/bench_peers.py --case latency [--cookbook PATH] [--reps 3] [--jobs N]
    python benchmarks/bench_peers.py --case high --cookbook /tmp/api_request_parallel_processor.py
    python benchmarks/bench_peers.py --case cpu --batchrunner-arg=--transport --batchrunner-arg=sdk
    python benchmarks/bench_peers.py --case stream

Cases (issue 11 targets 1 and 2): ``latency`` 5,000 jobs at 200 +/- 50 ms, concurrency 100; ``high``
20,000 jobs at 1 s, concurrency 1,000; ``cpu`` 20,000 jobs at 0 ms, concurrency 64; ``stream`` the
``latency`` case with ``"stream": true`` lines (one SSE event a word, 5 ms between events; the aiohttp
loop reads each stream whole, the cookbook script cannot read streams and is left out). Each client is a
whole process (wall from start to exit); the order rotates every repetition; medians. Every run is checked
against the server's books: each client must send every job once and get every answer. The cookbook
script is not in the repository: fetch ``examples/api_request_parallel_processor.py`` from
github.com/openai/openai-cookbook and pass its path (``harness/cookbook_client.py`` says how it is run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import machine, pinning, report
from harness.manifests import write_manifest
from harness.paths import DATA
from harness.processes import client_env, harness_env, run_process
from harness.server import Server

CASES = {
    "latency": {"jobs": 5000, "latency_ms": 150, "jitter_ms": 100, "concurrency": 100},
    "high": {"jobs": 20000, "latency_ms": 1000, "jitter_ms": 0, "concurrency": 1000},
    "cpu": {"jobs": 20000, "latency_ms": 0, "jitter_ms": 0, "concurrency": 64},
    "stream": {"jobs": 5000, "latency_ms": 150, "jitter_ms": 100, "concurrency": 100, "event_gap_ms": 5},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--jobs", type=int, help="Override the case's job count (a smoke run).")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--cookbook", type=Path, help="Path to the cookbook's api_request_parallel_processor.py."
    )
    parser.add_argument("--batchrunner-arg", action="append", default=[], help="An extra flag for `run`.")
    parser.add_argument("--label", default="", help="Appended to the results file's name.")
    parser.add_argument("--no-pin", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    case = {**CASES[args.case], **({"jobs": args.jobs} if args.jobs else {})}
    pinned = not args.no_pin
    stream = "event_gap_ms" in case
    name = f"peers-{case['jobs']}" + ("-stream" if stream else "")
    manifest = write_manifest(DATA / f"{name}.jsonl", case["jobs"], f"peers{case['jobs']}", stream=stream)
    server_args = ["--latency-ms", str(case["latency_ms"]), "--jitter-ms", str(case["jitter_ms"])]
    if stream:
        server_args += ["--event-gap-ms", str(case["event_gap_ms"])]
    info = machine.machine_info(pinned)
    with Server(server_args, pinned=pinned) as server:
        clients = clients_for(args, case, manifest, server, pinned)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        for rep in range(args.reps):
            names = list(clients)
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                server.reset()
                result = clients[name]()
                books = server.stats()
                result.update(requests=books["requests"], answers=books["answers_total"])
                runs[name].append(result)
                print(f"  rep {rep + 1} {name:12s} {line(result, case['jobs'])}", flush=True)
    summary = {name: medians(results, case["jobs"]) for name, results in runs.items()}
    print_table(summary)
    info["load_after"] = machine.loadavg()
    name = f"peers-{args.case}" + (f"-{args.label}" if args.label else "")
    print(f"saved {report.save(name, {'machine': info, 'case': case, 'summary': summary, 'runs': runs})}")


def clients_for(
    args: argparse.Namespace, case: dict[str, int], manifest: Path, server: Server, pinned: bool
) -> dict[str, Callable[[], dict[str, Any]]]:
    c = str(case["concurrency"])

    def batchrunner() -> dict[str, Any]:
        work = Path(tempfile.mkdtemp(prefix="peers-br-"))
        argv = [sys.executable, "-m", "batchrunner", "run", str(manifest), "--base-url", server.url]
        argv += [
            "--concurrency",
            c,
            "--db",
            str(work / "run.db"),
            "--no-progress",
            "-q",
            *args.batchrunner_arg,
        ]
        exited = run_process(pinning.pin(pinning.CLIENT_CPU, argv, pinned), cwd=work, env=client_env())
        import sqlite3

        with sqlite3.connect(work / "run.db") as conn:
            ok = conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
        return {"wall_s": exited.wall_s, "cpu_s": exited.cpu_s, "exit": exited.code, "ok": ok}

    def child(module: str, *extra: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            work = Path(tempfile.mkdtemp(prefix=f"peers-{module}-"))
            out = work / "out.json"
            argv = [sys.executable, "-m", f"harness.{module}", "--manifest", str(manifest)]
            argv += ["--base-url", server.url, "--out", str(out), *extra]
            exited = run_process(pinning.pin(pinning.CLIENT_CPU, argv, pinned), cwd=work, env=harness_env())
            ok = json.loads(out.read_text())["ok"] if out.exists() else 0
            return {"wall_s": exited.wall_s, "cpu_s": exited.cpu_s, "exit": exited.code, "ok": ok}

        return run

    clients = {"batchrunner": batchrunner, "aiohttp loop": child("aiohttp_client", "--concurrency", c)}
    if args.cookbook is not None and "event_gap_ms" not in case:
        clients["cookbook"] = child("cookbook_client", "--script", str(args.cookbook.resolve()))
    return clients


def line(r: dict[str, Any], jobs: int) -> str:
    return (
        f"wall {r['wall_s']:6.2f}s ({jobs / r['wall_s']:7.1f} jobs/s)  cpu {r['cpu_s']:5.1f}s  "
        f"ok {r['ok']}/{jobs}  server: {r['requests']} requests, {r['answers']} answers  exit {r['exit']}"
    )


def medians(results: list[dict[str, Any]], jobs: int) -> dict[str, Any]:
    wall = statistics.median(r["wall_s"] for r in results)
    return {
        "wall_s": wall,
        "jobs_per_s": jobs / wall,
        "cpu_ms_per_job": statistics.median(1000 * r["cpu_s"] / jobs for r in results),
        "all_done": all(r["ok"] == jobs == r["requests"] == r["answers"] for r in results),
    }


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    yardstick = summary["aiohttp loop"]["jobs_per_s"]
    print(f"\n{'client':14s} {'wall s':>8s} {'jobs/s':>9s} {'CPU ms/job':>11s} {'vs aiohttp':>11s}  all once")
    for name, s in summary.items():
        print(
            f"{name:14s} {s['wall_s']:8.2f} {s['jobs_per_s']:9.1f} {s['cpu_ms_per_job']:11.2f} "
            f"{s['jobs_per_s'] / yardstick:10.0%}  {s['all_done']}"
        )
    if "cookbook" in summary:
        ratio = summary["batchrunner"]["jobs_per_s"] / summary["cookbook"]["jobs_per_s"]
        print(f"batchrunner / cookbook: {ratio:.0%}")


if __name__ == "__main__":
    main()
