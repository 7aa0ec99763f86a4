"""``status``'s timing figures on a 1,000,000-job SQLite run: the histogram read beside an exact sort.

    python benchmarks/bench_status_timing.py [--jobs 1000000] [--repeat 20]

A database with ``--jobs`` jobs, one attempt each (latencies spread 50-2,000 ms, the last 30,000 within the
last minute), is written with plain ``sqlite3`` in the current schema (``Store.open`` creates it), then the
histograms are counted by migration 0008's backfill (timed once, as an upgrade would run it). Then, in the
same process, ``--repeat`` times each, medians reported:

- **batchrunner**: ``Store.timing`` (the run's histogram rows, and the last minute's attempts);
- **baseline**: the exact percentiles of the run, ``SELECT latency_ms ... ORDER BY latency_ms`` over the
  run's attempts joined to its jobs (what a query without histograms must do).

Target (issue 13): the timing read <= 100 ms on a 1M-job run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_submit import machine

from batchrunner.store.store import Store


async def build(path: Path, jobs: int) -> None:
    store = await Store.open(str(path))
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO runs (id, name, created_at) VALUES (1, 'bench', '2026-12-01 00:00:00')")
    rng = random.Random(7)
    now = datetime.now(UTC).replace(tzinfo=None)
    old = now - timedelta(hours=1)
    batch_size = 50_000
    for start in range(0, jobs, batch_size):
        ids = range(start + 1, min(jobs, start + batch_size) + 1)
        conn.executemany(
            "INSERT INTO jobs (id, run_id, custom_id, line_number, format, provider, endpoint, model, "
            "request_json, content_hash, state, attempts) VALUES (?, 1, ?, ?, 'simple', 'openai', "
            "'/v1/chat/completions', 'gpt-4o-mini', '{}', 'x', 'succeeded', 1)",
            [(i, f"j{i}", i) for i in ids],
        )
        rows = []
        for i in ids:
            finished = now - timedelta(seconds=rng.uniform(0, 55)) if i > jobs - 30_000 else old
            rows.append(
                (i, i, finished.isoformat(sep=" "), finished.isoformat(sep=" "), rng.uniform(50, 2000))
            )
        conn.executemany(
            "INSERT INTO attempts (id, job_id, number, started_at, finished_at, latency_ms, possibly_billed) "
            "VALUES (?, ?, 1, ?, ?, ?, 0)",
            rows,
        )
    conn.execute("DELETE FROM schema_migrations WHERE name = '0008_latency_histograms'")
    conn.execute("DELETE FROM latencies")
    conn.commit()
    conn.close()


def exact(path: Path) -> tuple[float, float, float]:
    conn = sqlite3.connect(path)
    values = [row[0] for row in conn.execute(
        "SELECT a.latency_ms FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.run_id = 1 "
        "AND a.latency_ms IS NOT NULL ORDER BY a.latency_ms"
    )]  # fmt: skip
    conn.close()
    n = len(values)
    return values[n // 2], values[int(n * 0.95)], values[int(n * 0.99)]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="bench-timing-")) / "timing.db"
    started = time.perf_counter()
    await build(path, args.jobs)
    built = time.perf_counter() - started
    started = time.perf_counter()
    store = await Store.open(str(path))  # runs 0008: the backfill
    upgrade = time.perf_counter() - started
    run = await store.find_run("bench")
    ours, theirs = [], []
    figures = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        figures = await store.timing(run)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = exact(path)
        theirs.append(time.perf_counter() - started)
    await store.close()
    assert figures is not None and figures.latency_run is not None
    info = machine()
    a, b = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    print(f"### status timing figures on a {args.jobs:,}-job SQLite run ({info['date']})\n")
    print(f"Machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, SQLite {info['sqlite']}, "
          f"load {info['load']}.")  # fmt: skip
    print(f"Command: `python benchmarks/bench_status_timing.py --jobs {args.jobs} --repeat {args.repeat}`\n")
    print("| read | median ms |\n|---|---|")
    print(f"| batchrunner `Store.timing` (histograms + last minute) | {a:.1f} |")
    print(f"| baseline: exact percentiles, ORDER BY over the run's attempts | {b:.1f} |\n")
    run_p = figures.latency_run
    print(f"Ratio {a / b:.3f}. Run p50/p95/p99: {run_p.p50}/{run_p.p95}/{run_p.p99} ms from the histograms, "
          f"{reference[0]:.1f}/{reference[1]:.1f}/{reference[2]:.1f} exact; last minute "
          f"{figures.attempts_last_minute:,} attempts. Building the database took {built:.0f} s; the 0008 "
          f"backfill of {args.jobs:,} attempts {upgrade:.1f} s.")  # fmt: skip
    print(f"{'Meets' if a <= 100 else 'MISSES'} the 100 ms target.")


if __name__ == "__main__":
    asyncio.run(main())
