"""The 1M-line submit/export benchmark: ``batchrunner submit`` against a plain json + sqlite3 baseline.

    python benchmarks/bench_submit.py [--lines 1000000] [--repeat 3] [--small 250000] [--markdown FILE]

Everything runs as subprocesses, timed by wall clock and measured for peak RSS with ``os.wait4`` (the
rusage of that one child, so one run's peak never hides another's):

1. **submit**: ``--repeat`` rounds, each running the baseline and then ``batchrunner submit`` on the same
   manifest into a fresh database; medians and the ratio are reported. Targets (the issue):
   >= 80,000 lines/s, >= 50% of the baseline's rate, peak RSS <= 300 MB.
2. **resubmit**: the same file submitted again into the last database (idempotent: 0 inserted), once.
3. **export**: the last database gets a result for every job (plain SQL, below), then
   ``batchrunner export --format csv`` of all rows, ``--repeat`` times; and of a ``--small``-line run,
   to show that peak RSS does not grow with the row count. Target: >= 100,000 rows/s, flat memory.

The baseline (``python benchmarks/bench_submit.py baseline FILE DB``) is what a careful script would do:
read the file in binary, ``json.loads`` each line, take ``custom_id``/``id`` (else ``line-N``), and
``executemany`` the raw line as the request into one table with a unique index on ``(run_id,
custom_id)``, in batches of 10,000 rows, one ``BEGIN IMMEDIATE`` transaction, WAL and
``synchronous=FULL``: no validation, no re-serialisation, no hashing, no second index.

The manifest comes from ``benchmarks/gen_manifest.py`` (deterministic; generated if missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gen_manifest

HERE = Path(__file__).resolve().parent
DATA = gen_manifest.DATA_DIR
ROOT = HERE.parent
SUBMIT_TARGET_RATE = 80_000
SUBMIT_TARGET_RATIO = 0.5
RSS_LIMIT_MB = 300
EXPORT_TARGET_RATE = 100_000
BASELINE_BATCH = 10_000
BASE_DB, OURS_DB, SMALL_DB = DATA / "baseline.db", DATA / "submit.db", DATA / "submit-small.db"
CSV, SMALL_CSV = DATA / "export.csv", DATA / "export-small.csv"


@dataclass(frozen=True)
class Sample:
    """One subprocess: wall time and peak resident set size."""

    seconds: float
    cpu_seconds: float
    """User + system time of the child: less sensitive than wall time to other load on the machine."""
    peak_rss_mb: float
    stderr: str


def measure(argv: list[str]) -> Sample:
    """Run ``argv`` to completion; its wall time and peak RSS (of that child alone, from ``wait4``)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err}")
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(seconds=seconds, cpu_seconds=cpu, peak_rss_mb=usage.ru_maxrss / 1024, stderr=err)


def fresh(db: Path) -> Path:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return db


# --- the baseline ----------------------------------------------------------------------------------


def baseline(manifest: Path, db: Path) -> int:
    """Load ``manifest`` into ``db`` with ``json`` and plain ``sqlite3``; return the rows inserted."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL,"
        " custom_id TEXT NOT NULL, line_number INTEGER NOT NULL, request_json TEXT NOT NULL,"
        " state TEXT NOT NULL DEFAULT 'pending')"
    )
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_run_custom_id ON jobs (run_id, custom_id)")
    sql = "INSERT OR IGNORE INTO jobs (run_id, custom_id, line_number, request_json) VALUES (1, ?, ?, ?)"
    inserted = 0
    conn.execute("BEGIN IMMEDIATE")
    batch: list[tuple[str, int, str]] = []
    with manifest.open("rb") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            obj = json.loads(raw)
            batch.append(
                (str(obj.get("custom_id") or obj.get("id") or f"line-{number}"), number, raw.decode())
            )
            if len(batch) == BASELINE_BATCH:
                inserted += conn.executemany(sql, batch).rowcount
                batch.clear()
    inserted += conn.executemany(sql, batch).rowcount
    conn.execute("COMMIT")
    conn.close()
    return inserted


# --- the benchmark ---------------------------------------------------------------------------------


def batchrunner_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchrunner", *args]


def submit_argv(manifest: Path, db: Path) -> list[str]:
    return batchrunner_argv(
        "submit", str(manifest), "--model", "gpt-4o-mini", "--run", "bench", "--db", str(db)
    )


def answer_every_job(db: Path) -> None:
    """Give every job of the database a result, as if a run had answered them all (plain SQL: fast)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO results (job_id, output_text, response_json, input_tokens, output_tokens,"
        " cached_tokens, cost_usd, latency_ms, created_at)"
        ' SELECT id, \'positive\', \'{"id":"chatcmpl-\' || id || \'","object":"chat.completion"}\','
        " 42, 3, 0, 0.0000081, 812.5, '2024-06-11 12:00:00.000000' FROM jobs"
        " WHERE id NOT IN (SELECT job_id FROM results)"
    )
    conn.execute(
        "UPDATE jobs SET state = 'succeeded', attempts = 1, finished_at = '2024-06-11 12:00:00.000000'"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def rows_in(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        count: int = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        return count
    finally:
        conn.close()


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{ram_gb:.1f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _triple(sample: Sample) -> tuple[float, float, float]:
    return (sample.seconds, sample.cpu_seconds, sample.peak_rss_mb)


def submit_rounds(manifest: Path, lines: int, repeat: int) -> tuple[list[Sample], list[Sample]]:
    """``repeat`` rounds of the baseline and then ``batchrunner submit``, each into a fresh database."""
    base_runs: list[Sample] = []
    ours_runs: list[Sample] = []
    for round_ in range(1, repeat + 1):
        base = measure([sys.executable, __file__, "baseline", str(manifest), str(fresh(BASE_DB))])
        ours = measure(submit_argv(manifest, fresh(OURS_DB)))
        base_runs.append(base)
        ours_runs.append(ours)
        print(
            f"round {round_}: baseline {lines / base.seconds:9,.0f} lines/s {base.peak_rss_mb:6.0f} MB | "
            f"submit {lines / ours.seconds:9,.0f} lines/s {ours.peak_rss_mb:6.0f} MB",
            flush=True,
        )
    assert rows_in(BASE_DB) == lines and rows_in(OURS_DB) == lines, "not every line was inserted"
    return base_runs, ours_runs


def export_rounds(small: Path, lines: int, args: argparse.Namespace) -> tuple[list[Sample], list[Sample]]:
    """Every job answered; ``export --format csv`` of all of them and of the small run, ``repeat`` times."""
    answer_every_job(OURS_DB)
    measure(submit_argv(small, fresh(SMALL_DB)))
    answer_every_job(SMALL_DB)
    export_runs: list[Sample] = []
    small_runs: list[Sample] = []
    for round_ in range(1, args.repeat + 1):
        big = measure(batchrunner_argv("export", "--db", str(OURS_DB), "--format", "csv", "-o", str(CSV)))
        little = measure(
            batchrunner_argv("export", "--db", str(SMALL_DB), "--format", "csv", "-o", str(SMALL_CSV))
        )
        export_runs.append(big)
        small_runs.append(little)
        print(
            f"export round {round_}: {lines:,} rows {lines / big.seconds:9,.0f} rows/s"
            f" {big.peak_rss_mb:6.0f} MB | {args.small:,} rows {args.small / little.seconds:9,.0f} rows/s"
            f" {little.peak_rss_mb:6.0f} MB",
            flush=True,
        )
    with CSV.open("rb") as exported:
        assert sum(1 for _ in exported) > lines, "the CSV has fewer lines than rows"
    return export_runs, small_runs


def run(args: argparse.Namespace) -> dict[str, Any]:
    manifest = gen_manifest.ensure(args.lines)
    small = gen_manifest.ensure(args.small)
    DATA.mkdir(exist_ok=True)
    lines = args.lines
    before = machine()
    print(f"{lines:,} lines, {manifest.stat().st_size / lines:.0f} bytes/line: {manifest}", flush=True)
    base_runs, ours_runs = submit_rounds(manifest, lines, args.repeat)
    resubmit = measure(submit_argv(manifest, OURS_DB))
    assert "0 job(s) queued" in resubmit.stderr, resubmit.stderr
    print(f"resubmit: {lines / resubmit.seconds:,.0f} lines/s {resubmit.peak_rss_mb:.0f} MB", flush=True)
    export_runs, small_runs = export_rounds(small, lines, args)
    return {
        "lines": lines,
        "small": args.small,
        "repeat": args.repeat,
        "bytes_per_line": manifest.stat().st_size / lines,
        "machine": before,
        "load_after": machine()["load"],
        "baseline": [_triple(s) for s in base_runs],
        "submit": [_triple(s) for s in ours_runs],
        "resubmit": _triple(resubmit),
        "export": [_triple(s) for s in export_runs],
        "export_small": [_triple(s) for s in small_runs],
        "csv_bytes": CSV.stat().st_size,
    }


def _medians(samples: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    wall, cpu, rss = zip(*samples, strict=True)
    return statistics.median(wall), statistics.median(cpu), statistics.median(rss)


def report(r: dict[str, Any]) -> str:
    lines, small = r["lines"], r["small"]
    base_s, base_cpu, base_rss = _medians(r["baseline"])
    ours_s, ours_cpu, ours_rss = _medians(r["submit"])
    exp_s, exp_cpu, exp_rss = _medians(r["export"])
    small_s, small_cpu, small_rss = _medians(r["export_small"])
    re_s, re_cpu, re_rss = r["resubmit"]
    base_rate, ours_rate = lines / base_s, lines / ours_s
    ratio, cpu_ratio = ours_rate / base_rate, base_cpu / ours_cpu

    def ok(good: bool) -> str:
        return "met" if good else "**not met**"

    m = r["machine"]
    out = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, Python {m['python']}, "
        f"SQLite {m['sqlite']}; {m['date']}; load average (1/5/15 min) {m['load']} before, "
        f"{r['load_after']} after.",
        f"Manifest: {lines:,} lines, {r['bytes_per_line']:.0f} bytes/line; medians of {r['repeat']} rounds.",
        "",
        "| | rate (wall) | wall time | CPU time | peak RSS | target | |",
        "|---|---:|---:|---:|---:|---|---|",
        f"| baseline (json + sqlite3) | {base_rate:,.0f} lines/s | {base_s:.2f} s | {base_cpu:.2f} s "
        f"| {base_rss:.0f} MB | | |",
        f"| `batchrunner submit` | {ours_rate:,.0f} lines/s | {ours_s:.2f} s | {ours_cpu:.2f} s "
        f"| {ours_rss:.0f} MB | >= {SUBMIT_TARGET_RATE:,} lines/s | {ok(ours_rate >= SUBMIT_TARGET_RATE)} |",
        f"| submit / baseline | {ratio:.0%} | | {cpu_ratio:.0%} (by CPU) | | >= {SUBMIT_TARGET_RATIO:.0%} "
        f"| {ok(ratio >= SUBMIT_TARGET_RATIO)} |",
        f"| submit peak RSS | | | | {ours_rss:.0f} MB | <= {RSS_LIMIT_MB} MB "
        f"| {ok(ours_rss <= RSS_LIMIT_MB)} |",
        f"| re-submit (idempotent, 0 inserted) | {lines / re_s:,.0f} lines/s | {re_s:.2f} s | {re_cpu:.2f} s "
        f"| {re_rss:.0f} MB | | |",
        f"| `export --format csv`, {lines:,} rows | {lines / exp_s:,.0f} rows/s | {exp_s:.2f} s "
        f"| {exp_cpu:.2f} s | {exp_rss:.0f} MB | >= {EXPORT_TARGET_RATE:,} rows/s "
        f"| {ok(lines / exp_s >= EXPORT_TARGET_RATE)} |",
        f"| `export --format csv`, {small:,} rows | {small / small_s:,.0f} rows/s | {small_s:.2f} s "
        f"| {small_cpu:.2f} s | {small_rss:.0f} MB | flat memory | {ok(exp_rss <= small_rss * 1.15 + 5)} |",
        "",
        "Every round (wall s / CPU s / peak RSS MB):",
        "",
        "| round | baseline | submit | export, all rows | export, small run |",
        "|---:|---|---|---|---|",
    ]
    for i, rounds in enumerate(
        zip(r["baseline"], r["submit"], r["export"], r["export_small"], strict=True), 1
    ):
        cells = " | ".join(f"{w:.2f} / {c:.2f} / {m:.0f}" for w, c, m in rounds)
        out.append(f"| {i} | {cells} |")
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "baseline":
        print(baseline(Path(sys.argv[2]), Path(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=250_000, help="rows of the second export (flat memory)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", type=Path, help="also write the results table to this file")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = parser.parse_args()
    results = run(args)
    table = report(results)
    print()
    print(table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
