"""1,000,000 queued jobs: ``batchrunner run``'s own memory while it drains them, and resume start-up.

    python benchmarks/bench_run_million.py [--quick] [--jobs 1000000] [--seconds 120] [--drain]
                                           [--resume-after 15] [--no-pin] [--profile]

The target is the runner's own memory with a million jobs queued, so the jobs are served by the in-process
``fake`` provider (no network, no server: ``batchrunner submit FILE --provider fake``) at concurrency 100,
pinned to CPU 0. Steps:

1. **submit** the manifest (1M OpenAI Batch chat lines, about 300 bytes each, generated once into
   ``benchmarks/data/``): wall, CPU and peak RSS of ``batchrunner submit``, reported separately.
2. **run**: ``batchrunner run --db DB --concurrency 100`` (progress on, as a user runs it: a summary
   line to stderr every 10 s, since stderr is not a terminal); every 0.5 s the benchmark reads
   its VmRSS (``/proc/PID/status``) and the jobs done (``max(results.id)`` through a read-only SQLite
   connection). It runs for ``--seconds`` and is then killed with SIGKILL (``--drain``: until the queue is
   empty). Reported: peak RSS (``wait4``), RSS when 10/50/90% of the jobs it got through were done, and the
   RSS drift from the 10% mark to the end. Target (the issue): peak RSS <= 150 MB and flat.
3. **resume**: after step 2's SIGKILL, ``batchrunner run`` again, polled every 10 ms. **Resume start-up**
   is the time from starting the process to the first new result committed to the database (a
   ``results`` row with an id above the last one before the restart): it includes the interpreter,
   imports, opening the database, taking back the dead runner's jobs, the first claim, the first answers
   and their first checkpoint. Also reported: process start to its
   runner row (registered) and to its first claim (a job leased to it). Target (the issue): <= 3 s.
   The resumed run goes on for 10 s, then gets SIGINT; the time it takes to exit is reported.
   This step runs under ``python -m harness.launcher --trace-store``, which times every database
   transaction through SQLAlchemy's events (nothing else changes; ``harness/storetrace.py``) to break
   the start-up down.

With ``--drain`` the first run is not killed but drains every job (about 13 minutes for 1M on this
machine); the resume step then uses a copy of the freshly submitted database, run for ``--resume-after``
seconds and killed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import machine, pinning, pyspy, report, snapshot
from harness.clients import batchrunner_argv
from harness.manifests import write_manifest
from harness.options import make_parser
from harness.paths import DATA, RESULTS_DIR
from harness.processes import Exited, Sampler, client_env, harness_env, run_process, vm_rss_mb

RSS_TARGET_MB = 150
RESUME_TARGET_S = 3.0


class DoneCounter:
    """Jobs answered so far, read from the database the run writes (WAL: reads never block it)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None

    def __call__(self) -> int | None:
        if self._conn is None:
            if not self.db.exists():
                return None
            self._conn = sqlite3.connect(
                f"file:{self.db}?mode=ro", uri=True, timeout=1, check_same_thread=False
            )
        row = self._conn.execute("SELECT max(id) FROM results").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def submit(manifest: Path, db: Path, pinned: bool) -> Exited:
    argv = batchrunner_argv("submit", str(manifest), "--db", str(db), "--provider", "fake")
    return run_process(pinning.pin(pinning.CLIENT_CPU, argv, pinned), cwd=db.parent, env=client_env())


def run_phase(
    db: Path, *, seconds: float | None, pinned: bool, profile: Path | None = None
) -> dict[str, Any]:
    """``batchrunner run`` on ``db``, sampled; SIGKILLed after ``seconds`` (None: until it exits)."""
    argv = pinning.pin(
        pinning.CLIENT_CPU,
        batchrunner_argv("run", "--db", str(db), "--concurrency", "100"),
        pinned,
    )
    counter = DoneCounter(db)
    before = counter() or 0
    start = time.perf_counter()
    with open(db.parent / "run-stderr.txt", "w") as err:
        proc = subprocess.Popen(argv, cwd=db.parent, env=client_env(), stderr=err)
    if profile is not None:
        pyspy.start_profiler(profile, rate=100)(proc.pid)
    sampler = Sampler(proc.pid, counter, interval_s=0.5)
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if seconds is not None and not killed and time.perf_counter() - start > seconds:
            proc.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    wall = time.perf_counter() - start
    samples = sampler.stop()
    done = (counter() or 0) - before
    counter.close()
    return {
        "wall_s": wall,
        "killed": killed,
        "exit_code": os.waitstatus_to_exitcode(status),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "jobs_done": done,
        "jobs_per_s": done / wall,
        "samples": [(round(t, 2), round(rss, 1), (n or before) - before) for t, rss, n in samples],
    }


def rss_marks(samples: list[tuple[float, float, int]], done: int) -> dict[str, Any]:
    """RSS when 10/50/90% of ``done`` jobs were done, and the drift from the 10% mark to the last sample."""
    marks: dict[str, Any] = {}
    for share in (0.1, 0.5, 0.9):
        hit = next(((t, rss, n) for t, rss, n in samples if n >= share * done), None)
        if hit is not None:
            marks[f"{share:.0%}"] = {"t_s": hit[0], "rss_mb": hit[1], "jobs": hit[2]}
    if "10%" in marks and samples:
        marks["drift_mb"] = round(samples[-1][1] - marks["10%"]["rss_mb"], 1)
        marks["last_rss_mb"] = samples[-1][1]
    return marks


class Child:
    """A child process reaped with ``wait4`` (its rusage kept) without blocking."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.exited: tuple[int, Any] | None = None

    def reap(self) -> bool:
        if self.exited is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.exited = (status, usage)
        return self.exited is not None


def _startup_marks(
    conn: sqlite3.Connection, child: Child, results_before: int, start: float
) -> dict[str, float]:
    """Poll every 10 ms: when the runner registered, claimed its first job, and committed a new result."""
    marks: dict[str, float] = {}
    pid = child.proc.pid
    queries = {
        "registered_s": ("SELECT 1 FROM runners WHERE pid = ? AND stopped_at IS NULL", (pid,)),
        "first_claim_s": (
            "SELECT 1 FROM jobs WHERE state = 'running' AND lease_owner LIKE ? LIMIT 1",
            (f"%-{pid}-%",),
        ),
        "first_result_s": ("SELECT 1 FROM results WHERE id > ? LIMIT 1", (results_before,)),
    }
    while not child.reap() and time.perf_counter() - start < 60:
        now = time.perf_counter() - start
        for name, (sql, params) in queries.items():
            if name in marks:
                continue
            try:
                if conn.execute(sql, params).fetchone():
                    marks[name] = now
            except sqlite3.OperationalError:
                pass
        if "first_result_s" in marks:
            break
        time.sleep(0.01)
    return marks


def _go_on_then_stop(child: Child, go_on_s: float) -> tuple[float | None, float | None]:
    """Let the resumed run go on for ``go_on_s``, then SIGINT it: its RSS then, and the time to exit."""
    deadline = time.perf_counter() + go_on_s
    while not child.reap() and time.perf_counter() < deadline:
        time.sleep(0.05)
    rss = vm_rss_mb(child.proc.pid)
    if child.reap():
        return rss, None
    sent = time.perf_counter()
    child.proc.send_signal(signal.SIGINT)
    while not child.reap():
        time.sleep(0.01)
    return rss, round(time.perf_counter() - sent, 2)


def resume(db: Path, *, pinned: bool, go_on_s: float = 10.0, profile: Path | None = None) -> dict[str, Any]:
    """Restart ``batchrunner run`` after a SIGKILL and time its start-up (module docstring, step 3)."""
    trace = db.parent / "store-trace.jsonl"
    trace.unlink(missing_ok=True)
    run_args = ["run", "--db", str(db), "--concurrency", "100"]
    argv = pinning.pin(
        pinning.CLIENT_CPU, batchrunner_argv(*run_args, launcher=["--trace-store", str(trace)]), pinned
    )
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    results_before = conn.execute("SELECT max(id) FROM results").fetchone()[0] or 0
    running_before = conn.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone()[0]
    start_epoch, start = time.time(), time.perf_counter()
    with open(db.parent / "resume-stderr.txt", "w") as err:
        proc = subprocess.Popen(argv, cwd=db.parent, env=harness_env(), stderr=err)
    if profile is not None:
        pyspy.start_profiler(profile, rate=500, idle=True)(proc.pid)
    child = Child(proc)
    marks = _startup_marks(conn, child, results_before, start)
    rss, stop_s = _go_on_then_stop(child, go_on_s)
    assert child.exited is not None
    status, usage = child.exited
    results_after = conn.execute("SELECT max(id) FROM results").fetchone()[0] or 0
    conn.close()
    events = [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []
    return {
        "running_before": running_before,
        **{key: round(value, 3) for key, value in marks.items()},
        "stop_after_sigint_s": stop_s,
        "exit_code": os.waitstatus_to_exitcode(status),
        "rss_after_s_mb": rss,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "jobs_done": results_after - results_before,
        "store_calls": _startup_calls(events, start_epoch, marks.get("first_result_s")),
    }


def _startup_calls(events: list[dict[str, Any]], start_epoch: float, until_s: float | None) -> list[Any]:
    """The database transactions (offset from process start, seconds) before the first result, as
    ``[label, start_s, duration_s]``; past the first 40, only labels not seen yet. The first entry is the
    end of the imports (``harness/storetrace.py`` says what a label is)."""
    calls: list[Any] = []
    seen: set[str] = set()
    for event in events:
        offset = event["t"] - start_epoch
        if until_s is not None and offset > until_s:
            break
        if len(calls) > 40 and event["event"] in seen:
            continue
        seen.add(event["event"])
        calls.append([event["event"], round(offset, 3), event.get("s")])
    return calls


def parse_args() -> argparse.Namespace:
    parser = make_parser(__doc__, reps=1)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the first run goes on")
    parser.add_argument("--drain", action="store_true", help="let the first run finish every job")
    parser.add_argument("--resume-after", type=float, default=15.0, help="with --drain: kill point")
    return parser.parse_args()


def print_run(first: dict[str, Any]) -> None:
    marks = first["rss"]
    print(
        f"run: {first['jobs_done']:,} jobs in {first['wall_s']:.1f} s "
        f"({first['jobs_per_s']:.0f} jobs/s), "
        f"{'killed' if first['killed'] else 'exit ' + str(first['exit_code'])}; peak RSS "
        f"{first['maxrss_mb']:.1f} MB; RSS at 10/50/90% of those jobs: "
        + ", ".join(f"{marks[k]['rss_mb']:.1f}" for k in ("10%", "50%", "90%") if k in marks)
        + f" MB; drift from 10% to the end {marks.get('drift_mb')} MB"
    )


def print_resume(again: dict[str, Any]) -> None:
    print(
        f"resume: {again['running_before']} running jobs left by the killed runner; registered at "
        f"{again.get('registered_s')} s, first claim at {again.get('first_claim_s')} s, first new result "
        f"at {again.get('first_result_s')} s; then {again['jobs_done']:,} jobs in 10 s; SIGINT to exit "
        f"{again['stop_after_sigint_s']} s; peak RSS {again['maxrss_mb']:.1f} MB"
    )
    print("  start-up, database transactions [label, start s, duration s]:")
    for call in again["store_calls"][:30]:
        print(f"    {call}")


def phases(args: argparse.Namespace, manifest: Path, jobs: int, seconds: float) -> dict[str, Any]:
    """Submit, run (killed or drained), resume, in one temporary directory."""
    pinned = not args.no_pin
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="br-bench-million-") as tmp:
        db = Path(tmp) / "million.db"
        done = submit(manifest, db, pinned)
        result["submit"] = {"wall_s": done.wall_s, "cpu_s": done.cpu_s, "maxrss_mb": done.maxrss_mb}
        print(
            f"submit {jobs:,} jobs: {done.wall_s:.1f} s wall, {done.cpu_s:.1f} s CPU, peak RSS "
            f"{done.maxrss_mb:.0f} MB, exit {done.code}"
        )
        resume_db = db
        if args.drain:
            resume_db = Path(tmp) / "resume" / "million.db"
            resume_db.parent.mkdir()
            shutil.copy(db, resume_db)
        profile = RESULTS_DIR / "profile-million-run.txt" if args.profile else None
        first = run_phase(db, seconds=None if args.drain else seconds, pinned=pinned, profile=profile)
        first["rss"] = rss_marks([tuple(s) for s in first["samples"]], first["jobs_done"])
        result["run"] = first
        print_run(first)
        if args.drain:
            short = run_phase(resume_db, seconds=args.resume_after, pinned=pinned)
            print(f"(resume test) run killed after {short['wall_s']:.1f} s, {short['jobs_done']:,} jobs done")
        resume_profile = RESULTS_DIR / "profile-million-resume.txt" if args.profile else None
        result["resume"] = resume(resume_db, pinned=pinned, profile=resume_profile)
        print_resume(result["resume"])
    return result


def verdict(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    peak = max(first["maxrss_mb"], again["maxrss_mb"])
    drift = abs(first["rss"].get("drift_mb") or 0.0)
    first_result = again.get("first_result_s")
    v = {
        "peak_rss_mb": peak,
        "rss_pass": peak <= RSS_TARGET_MB and drift <= 10,
        "resume_s": first_result,
        "resume_pass": first_result is not None and first_result <= RESUME_TARGET_S,
    }
    rss_ok, resume_ok = report.verdict(v["rss_pass"]), report.verdict(v["resume_pass"])
    print(
        f"peak RSS {peak:.1f} MB (target <= {RSS_TARGET_MB}, flat) -> {rss_ok}; "
        f"resume start-up {first_result} s (target <= {RESUME_TARGET_S}) -> {resume_ok}"
    )
    return v


def main() -> None:
    args = parse_args()
    snapshot.activate()
    jobs = 100_000 if args.quick else args.jobs
    seconds = 20.0 if args.quick else args.seconds
    manifest = DATA / f"run-million-{jobs}.jsonl"
    if not manifest.exists():
        print(f"writing {manifest} ...")
        write_manifest(manifest, jobs, f"million-{jobs}")
    info = machine.machine_info(not args.no_pin)
    result: dict[str, Any] = {"name": "million", "machine": info, "jobs": jobs}
    result.update(phases(args, manifest, jobs, seconds))
    result["verdict"] = verdict(result["run"], result["resume"])
    if args.profile:
        for name in ("run", "resume"):
            path = RESULTS_DIR / f"profile-million-{name}.txt"
            if pyspy.wait_for_file(path, 5):
                result.setdefault("profiles", {})[name] = pyspy.profile_summary(path)
                pyspy.print_profile(f"million {name}", result["profiles"][name])
    info["load_after"] = machine.loadavg()
    print(f"saved {report.save(report.result_name('million', args), result)}")


if __name__ == "__main__":
    main()
