"""Shared parts of the run-engine benchmarks (``bench_run_*.py``): manifests, the fake server, the two
clients, timing, and the bare-SDK baseline itself.

The two clients, always run as subprocesses against the same fake server subprocess:

- **ours**: ``batchrunner run FILE --base-url URL --concurrency N [--rpm R] --db DB --no-progress`` in a
  fresh temporary directory (so no ``batchrunner.toml`` or ``.env`` is picked up) with a fresh database.
- **baseline**: ``python benchmarks/run_common.py baseline ...`` (:func:`baseline_main` below): a plain
  asyncio loop, ``openai.AsyncOpenAI(base_url=..., api_key=..., max_retries=0)``, an
  ``asyncio.Semaphore(concurrency)`` and one task per job calling ``client.chat.completions.create(**body)``
  with the ``body`` of the same manifest line; answers are kept in a list and written to a JSONL file at
  the end (no database, no durability). With ``--retries K`` a failed call is retried inside the semaphore
  (the slot is held while sleeping, as the SDK's own retries do): a 429 sleeps its ``retry-after-ms``
  (else ``retry-after`` seconds, else 1 s); any other ``APIStatusError`` >= 500, 408, 409 or an
  ``APIConnectionError`` sleeps ``uniform(0, min(8, 0.5 * 2 ** (attempt - 1)))`` s (full jitter); other
  errors fail the job; at most ``K`` retries.

The engine under test is a snapshot of the committed tree (``git archive HEAD batchrunner``, unpacked under
``/tmp`` and put first on ``PYTHONPATH`` for this process and every child), so that edits other people make to
the working tree while a benchmark runs cannot change the code between repetitions; ``BENCH_LIVE=1`` uses
the working tree instead. Every result names the commit.

Pinning: on this 2-core machine the server is pinned to CPU 1 and each client to CPU 0 (``taskset``), so
the server's CPU never competes with the client's and both clients get exactly one core (batchrunner's
SQLite thread shares the client's core). ``--no-pin`` turns it off.

Timing of one run (a :class:`RunResult`):

- ``wall_s``: from ``Popen`` to the process's exit (Python start-up, imports, submit, run, shutdown);
- ``active_s``: the fake server's ``answer_span_s``, from the first request it received to the last
  answer it sent (the same clock for both clients);
- ``startup_s``: from ``Popen`` to the client's first request (ours: the earliest ``attempts.started_at``;
  baseline: its own clock); ``cpu_s`` and ``maxrss_mb`` from ``os.wait4`` (that child alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
RESULTS_DIR = DATA / "run_results"
API_KEY = "sk-bench-not-a-real-key"
CLIENT_CPU = "0"
SERVER_CPU = "1"
MODEL = "gpt-4o-mini"
_TEXT = (
    "the battery lasts all day and the screen is great but the speaker is weak delivery was late support "
    "answered quickly price is fair would buy again quality feels cheap colour faded"
)
_WORDS = _TEXT.split(" ")


# -- the code under test --------------------------------------------------------------------------


def _snapshot() -> str:
    """Unpack ``git archive HEAD batchrunner`` once per commit; return ``live`` or the commit used."""
    if os.environ.get("BENCH_LIVE") == "1":
        return "live working tree"
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return "live working tree (not a git checkout)"
    target = Path(tempfile.gettempdir()) / f"br-bench-snapshot-{commit[:12]}"
    if not (target / "batchrunner" / "__init__.py").exists():
        temp = Path(tempfile.mkdtemp(prefix="br-bench-snapshot-"))
        archive = subprocess.run(["git", "archive", commit, "batchrunner"], cwd=ROOT, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(temp)], input=archive.stdout, check=True)
        with contextlib.suppress(OSError):
            temp.rename(target)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return f"snapshot of {commit[:12]}"


# -- manifests -------------------------------------------------------------------------------------


def chat_body(i: int, tag: str, rng: random.Random) -> dict[str, Any]:
    """The request of job ``i``: a unique prompt (the fake server keys its books by prompt)."""
    review = " ".join(rng.choices(_WORDS, k=20))
    prompt = f"{tag} job {i}: classify the sentiment (positive/negative) of: {review}"
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}


def write_manifest(path: Path, jobs: int, tag: str) -> Path:
    """``jobs`` OpenAI Batch API chat lines (about 300 bytes each); the baseline sends the same bodies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(tag)
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w") as out:
        for i in range(jobs):
            line = {
                "custom_id": f"{tag}-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(i, tag, rng),
            }
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    temp.replace(path)
    return path


# -- the machine -----------------------------------------------------------------------------------


def machine_info(pinned: bool) -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    import openai

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram": ram,
        "python": platform.python_version(),
        "openai": openai.__version__,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "code": CODE_UNDER_TEST,
        "pinning": f"server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}" if pinned else "none",
        "load_before": _loadavg(),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def pin(cpu: str, argv: list[str], pinned: bool) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if pinned else argv


# -- the fake server -------------------------------------------------------------------------------


class Server:
    """The fake provider server in its own (pinned) process; ``reset()`` between runs."""

    def __init__(self, args: Sequence[str], *, pinned: bool = True) -> None:
        from batchrunner.fakeserver.testing import FakeServerProcess

        self.args = list(args)
        self.proc = FakeServerProcess(["--seed", "1", *args])
        self.proc.args = pin(SERVER_CPU, self.proc.args, pinned)

    def __enter__(self) -> Server:
        self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()

    @property
    def url(self) -> str:
        return self.proc.openai_base_url

    def reset(self) -> None:
        self.proc.reset()

    def stats(self) -> dict[str, Any]:
        return self.proc.stats(prompts=False)


# -- running one client ----------------------------------------------------------------------------


@dataclass
class RunResult:
    """One client run; see the module docstring for what each time means."""

    who: str
    jobs: int
    exit_code: int
    wall_s: float
    active_s: float | None
    startup_s: float | None
    cpu_s: float
    maxrss_mb: float
    succeeded: int
    failed: int
    other: int
    requests: int
    by_status: dict[str, int]
    duplicates: int
    limit_violations: int
    peak_concurrency: int
    capped: bool = False
    """Stopped (SIGINT) by the benchmark's time cap before it finished."""
    stop_s: float | None = None
    """With ``capped``: seconds from the SIGINT to the exit."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_wall(self) -> float:
        return self.succeeded / self.wall_s

    @property
    def rate_active(self) -> float | None:
        return self.succeeded / self.active_s if self.active_s else None

    @property
    def status_429(self) -> int:
        return self.by_status.get("429", 0)


@dataclass
class Exited:
    code: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float
    start_epoch: float
    capped: bool = False
    stop_s: float | None = None


def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    cap_s: float | None = None,
    grace_s: float = 40.0,
    on_start: Callable[[int], None] | None = None,
    stdout: Any = subprocess.DEVNULL,
) -> Exited:
    """Run ``argv``; SIGINT it after ``cap_s`` (then SIGKILL after ``grace_s``); wall, CPU and peak RSS."""
    start_epoch, start = time.time(), time.perf_counter()
    with open(cwd / "stderr.txt", "w") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=err)
    if on_start is not None:
        on_start(proc.pid)
    capped, stop_s, sent = False, None, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter()
        if cap_s is not None and sent is None and now - start > cap_s:
            proc.send_signal(signal.SIGINT)
            capped, sent = True, now
        if sent is not None and now - sent > grace_s:
            proc.kill()
        time.sleep(0.005)
    end = time.perf_counter()
    if sent is not None:
        stop_s = end - sent
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Exited(
        code=proc.returncode,
        wall_s=end - start,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024,
        start_epoch=start_epoch,
        capped=capped,
        stop_s=stop_s,
    )


def client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHRUNNER_", "OPENAI_", "ANTHROPIC_"))}
    env.update({"OPENAI_API_KEY": API_KEY, "PYTHONUNBUFFERED": "1"})
    return env


def batchrunner_argv(*args: str, launcher: Sequence[str] = ()) -> list[str]:
    """``python -m batchrunner ARGS`` (or ``python run_common.py patched-run LAUNCHER -- ARGS``)."""
    if launcher:
        return [sys.executable, str(HERE / "run_common.py"), "patched-run", *launcher, "--", *args]
    return [sys.executable, "-m", "batchrunner", *args]


def run_ours(
    manifest: Path,
    server: Server,
    *,
    concurrency: int,
    rpm: float | None = None,
    pinned: bool = True,
    cap_s: float | None = None,
    launcher: Sequence[str] = (),
    who: str = "batchrunner",
    profile: Path | None = None,
) -> RunResult:
    """``batchrunner run FILE`` against ``server`` in a fresh directory and database."""
    server.reset()
    with tempfile.TemporaryDirectory(prefix="br-bench-") as tmp:
        work = Path(tmp)
        db = work / "bench.db"
        args = ["run", str(manifest), "--base-url", server.url, "--concurrency", str(concurrency)]
        if rpm is not None:
            args += ["--rpm", str(rpm)]
        args += ["--db", str(db), "--no-progress"]
        done = run_process(
            pin(CLIENT_CPU, batchrunner_argv(*args, launcher=launcher), pinned),
            cwd=work,
            env=client_env(),
            cap_s=cap_s,
            on_start=None if profile is None else start_profiler(profile),
        )
        stats = server.stats()
        states, first, last, starts, ok_starts, ok_ends = _db_facts(db)
        stderr = (work / "stderr.txt").read_text()[-2000:]
    jobs = sum(states.values())
    return RunResult(
        who=who,
        jobs=jobs,
        exit_code=done.code,
        wall_s=done.wall_s,
        active_s=stats.get("answer_span_s"),
        startup_s=None if first is None else first - done.start_epoch,
        cpu_s=done.cpu_s,
        maxrss_mb=done.maxrss_mb,
        succeeded=states.get("succeeded", 0),
        failed=states.get("failed", 0),
        other=jobs - states.get("succeeded", 0) - states.get("failed", 0),
        requests=stats["requests"],
        by_status=stats["by_status"],
        duplicates=stats["duplicates"],
        limit_violations=stats["limit_violations"],
        peak_concurrency=stats["peak_concurrency"],
        capped=done.capped,
        stop_s=done.stop_s,
        extra={
            "client_span_s": None if first is None or last is None else last - first,
            "start_slope_per_s": slope(starts),
            "ok_slope_per_s": slope(ok_starts),
            "done_at_s": done_at(first, ok_ends, jobs),
            "stderr_tail": stderr if done.code not in (0, 130) else "",
        },
    )


def _db_facts(
    db: Path,
) -> tuple[dict[str, int], float | None, float | None, list[float], list[float], list[float]]:
    """Job counts by state, the first attempt's start, the last attempt's end, every attempt's start, and
    the start and the end of every attempt that was answered (status 200)."""
    if not db.exists():
        return {}, None, None, [], [], []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        rows = conn.execute(
            "SELECT started_at, status_code, finished_at FROM attempts ORDER BY started_at"
        ).fetchall()
        last = conn.execute("SELECT max(finished_at) FROM attempts").fetchone()[0]
    finally:
        conn.close()
    starts = [_epoch(r[0]) for r in rows]
    ok = [_epoch(r[0]) for r in rows if r[1] == 200]
    ok_ends = sorted(_epoch(r[2]) for r in rows if r[1] == 200)
    return states, (starts[0] if starts else None), (_epoch(last) if last else None), starts, ok, ok_ends


def _epoch(text: str) -> float:
    """A store timestamp (ISO text, UTC without an offset on SQLite) as Unix seconds."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def done_at(first: float | None, ok_ends: Sequence[float], jobs: int) -> dict[str, float]:
    """Seconds from the first request until 50/90/99/100% of the jobs had their answer (the tail)."""
    if first is None or not ok_ends:
        return {}
    marks = {}
    for share in (0.5, 0.9, 0.99, 1.0):
        index = max(0, min(len(ok_ends), round(share * jobs)) - 1)
        if round(share * jobs) <= len(ok_ends):
            marks[f"{share:.0%}"] = round(ok_ends[index] - first, 3)
    return marks


def slope(times: Sequence[float]) -> float | None:
    """Requests per second as the least-squares slope of (send time, cumulative count).

    Unlike count / span it is not fooled by the first and last bursts of a windowed limiter (a run of
    20 windows of 60 requests is 1,200 requests over 19 windows, not 20).
    """
    n = len(times)
    if n < 3:
        return None
    t0 = times[0]
    xs = [t - t0 for t in times]
    mean_x, mean_y = sum(xs) / n, (n - 1) / 2
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (i - mean_y) for i, x in enumerate(xs))
    return sxy / sxx if sxx else None


def run_baseline(
    manifest: Path,
    server: Server,
    *,
    concurrency: int,
    retries: int = 0,
    pinned: bool = True,
    cap_s: float | None = None,
    who: str = "bare SDK loop",
    profile: Path | None = None,
) -> RunResult:
    """The bare-SDK asyncio loop (:func:`baseline_main`) as a subprocess against ``server``."""
    server.reset()
    with tempfile.TemporaryDirectory(prefix="br-bench-") as tmp:
        work = Path(tmp)
        out = work / "baseline.json"
        argv = [
            sys.executable,
            str(HERE / "run_common.py"),
            "baseline",
            "--manifest",
            str(manifest),
            "--base-url",
            server.url,
            "--concurrency",
            str(concurrency),
            "--retries",
            str(retries),
            "--out",
            str(out),
        ]
        done = run_process(
            pin(CLIENT_CPU, argv, pinned),
            cwd=work,
            env=client_env(),
            cap_s=cap_s,
            on_start=None if profile is None else start_profiler(profile),
        )
        stats = server.stats()
        report = json.loads(out.read_text()) if out.exists() else {}
        stderr = (work / "stderr.txt").read_text()[-2000:]
    starts = report.get("starts", [])
    first = starts[0] if starts else None
    jobs = report.get("jobs", 0)
    return RunResult(
        who=who,
        jobs=jobs,
        exit_code=done.code,
        wall_s=done.wall_s,
        active_s=stats.get("answer_span_s"),
        startup_s=None if first is None else first - done.start_epoch,
        cpu_s=done.cpu_s,
        maxrss_mb=done.maxrss_mb,
        succeeded=report.get("succeeded", 0),
        failed=report.get("failed", 0),
        other=jobs - report.get("succeeded", 0) - report.get("failed", 0),
        requests=stats["requests"],
        by_status=stats["by_status"],
        duplicates=stats["duplicates"],
        limit_violations=stats["limit_violations"],
        peak_concurrency=stats["peak_concurrency"],
        capped=done.capped,
        stop_s=done.stop_s,
        extra={
            "client_span_s": report.get("span_s"),
            "start_slope_per_s": slope(starts),
            "ok_slope_per_s": slope(sorted(report.get("ok_starts", []))),
            "done_at_s": done_at(first, sorted(report.get("ok_ends", [])), jobs),
            "errors": report.get("errors", {}),
            "stderr_tail": stderr if done.code else "",
        },
    )


def submit_time(manifest: Path, *, pinned: bool = True, provider: str | None = None) -> Exited:
    """``batchrunner submit FILE`` alone into a fresh database: the submit part of ``run FILE``."""
    with tempfile.TemporaryDirectory(prefix="br-bench-") as tmp:
        args = ["submit", str(manifest), "--db", str(Path(tmp) / "s.db")]
        if provider:
            args += ["--provider", provider]
        return run_process(pin(CLIENT_CPU, batchrunner_argv(*args), pinned), cwd=Path(tmp), env=client_env())


# -- alternating repetitions and summaries ---------------------------------------------------------


def alternate(
    reps: int, clients: dict[str, Callable[[], RunResult]], log: Callable[[str], None] = print
) -> dict[str, list[RunResult]]:
    """``reps`` rounds of every client, the order rotating each round (A B, B A, ...) to spread drift."""
    names = list(clients)
    results: dict[str, list[RunResult]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            result = clients[name]()
            results[name].append(result)
            log(f"  rep {rep + 1} {name:28s} {describe(result)}")
            if result.extra.get("stderr_tail"):
                log(f"    stderr: {result.extra['stderr_tail']}")
    return results


def describe(r: RunResult) -> str:
    active = f"{r.active_s:6.2f}s" if r.active_s else "   n/a"
    rate = f"{r.rate_active:7.1f}/s" if r.rate_active else "     n/a"
    cap = f" CAPPED(stop {r.stop_s:.1f}s)" if r.capped else ""
    return (
        f"wall {r.wall_s:6.2f}s ({r.rate_wall:7.1f}/s)  active {active} ({rate})  startup "
        f"{(r.startup_s or 0):4.2f}s  cpu {r.cpu_s:5.1f}s  rss {r.maxrss_mb:4.0f}MB  "
        f"ok {r.succeeded}/{r.jobs} "
        f"req {r.requests} {dict(sorted(r.by_status.items()))} dup {r.duplicates} exit {r.exit_code}{cap}"
    )


def median(values: Iterator[float | None] | list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summary(runs: list[RunResult]) -> dict[str, Any]:
    """Medians over repetitions (and the raw runs)."""
    return {
        "reps": len(runs),
        "wall_s": median([r.wall_s for r in runs]),
        "active_s": median([r.active_s for r in runs]),
        "startup_s": median([r.startup_s for r in runs]),
        "rate_wall": median([r.rate_wall for r in runs]),
        "rate_active": median([r.rate_active for r in runs]),
        "cpu_s": median([r.cpu_s for r in runs]),
        "cpu_ms_per_job": median([1000 * r.cpu_s / max(r.succeeded, 1) for r in runs]),
        "maxrss_mb": max(r.maxrss_mb for r in runs),
        "all_done": all(r.succeeded == r.jobs and not r.capped for r in runs),
        "duplicates": sum(r.duplicates for r in runs),
        "runs": [asdict(r) for r in runs],
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/data/run_results/NAME.json`` (the figures RUN_RESULTS.md quotes)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def result_name(base: str, args: argparse.Namespace) -> str:
    """``base``, ``base-quick``, ``base-LABEL``: the name of the saved results file."""
    return "-".join(part for part in (base, "quick" if args.quick else "", args.label) if part)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def make_parser(doc: str | None, *, reps: int) -> argparse.ArgumentParser:
    """The options every ``bench_run_*`` script takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(parser, reps=reps)
    return parser


def common_args(parser: argparse.ArgumentParser, *, reps: int) -> None:
    parser.add_argument("--quick", action="store_true", help="a small smoke run (1 repetition, fewer jobs)")
    parser.add_argument("--reps", type=int, default=reps, help=f"repetitions [default: {reps}]")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="one extra py-spy run of each client")
    parser.add_argument("--label", default="", help="appended to the name of the saved results file")
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also run batchrunner under `run_common.py patched-run ARGS` once per repetition "
        "(e.g. 'nojitter=--pause-jitter 0')",
    )


def compare(
    *,
    name: str,
    server_args: Sequence[str],
    jobs: int,
    reps: int,
    concurrency: int,
    pinned: bool,
    rpm: float | None = None,
    baseline_retries: int = 0,
    cap_s: float | None = None,
    profile: bool = False,
    what_ifs: Sequence[str] = (),
) -> dict[str, Any]:
    """The standard side-by-side case: one manifest, one server, ``reps`` alternating rounds of the bare loop
    and ``batchrunner run``, plus the time of ``batchrunner submit`` of the same file alone."""
    manifest = write_manifest(DATA / f"run-{name}-{jobs}.jsonl", jobs, f"{name}-{jobs}")
    info = machine_info(pinned)
    print(f"{name}: {jobs:,} jobs, concurrency {concurrency}, server {' '.join(server_args)}, {reps} rep(s)")
    with Server(server_args, pinned=pinned) as server:
        clients: dict[str, Callable[[], RunResult]] = {
            "baseline": lambda: run_baseline(
                manifest,
                server,
                concurrency=concurrency,
                retries=baseline_retries,
                pinned=pinned,
                cap_s=cap_s,
            ),
            "batchrunner": lambda: run_ours(
                manifest, server, concurrency=concurrency, rpm=rpm, pinned=pinned, cap_s=cap_s
            ),
        }
        for spec in what_ifs:
            label, _, launcher = spec.partition("=")
            clients[f"what-if {label}"] = functools.partial(
                run_ours,
                manifest,
                server,
                concurrency=concurrency,
                rpm=rpm,
                pinned=pinned,
                cap_s=cap_s,
                launcher=launcher.split(),
                who=f"what-if {label}",
            )
        results = alternate(reps, clients)
        profiles = {}
        if profile:
            for who, runner in (("baseline", run_baseline), ("batchrunner", run_ours)):
                out = RESULTS_DIR / f"profile-{name}-{who}.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.unlink(missing_ok=True)
                kwargs: dict[str, Any] = (
                    {"rpm": rpm} if who == "batchrunner" else {"retries": baseline_retries}
                )
                run = runner(  # type: ignore[operator]
                    manifest,
                    server,
                    concurrency=concurrency,
                    pinned=pinned,
                    cap_s=cap_s,
                    profile=out,
                    **kwargs,
                )
                print(f"  profiled {who:24s} {describe(run)}")
                if wait_for_file(out):
                    profiles[who] = profile_summary(out)
                    print_profile(f"{name}: {who} (py-spy, {out.name})", profiles[who])
    submit = submit_time(manifest, pinned=pinned)
    info["load_after"] = _loadavg()
    return {
        "name": name,
        "machine": info,
        "jobs": jobs,
        "concurrency": concurrency,
        "server_args": list(server_args),
        "rpm": rpm,
        "submit_wall_s": submit.wall_s,
        "submit_cpu_s": submit.cpu_s,
        "baseline": summary(results["baseline"]),
        "batchrunner": summary(results["batchrunner"]),
        "profiles": profiles,
        "what_ifs": {
            name: {"launcher": spec, **summary(results[f"what-if {name}"])}
            for spec in what_ifs
            for name in [spec.partition("=")[0]]
        },
    }


def print_pair(result: dict[str, Any]) -> None:
    """The medians of both clients side by side."""
    base, ours = result["baseline"], result["batchrunner"]
    rows = [
        ("wall s (process start to exit)", "wall_s", "{:.2f}"),
        ("jobs/s on wall", "rate_wall", "{:.1f}"),
        ("active s (first request to last answer)", "active_s", "{:.2f}"),
        ("jobs/s on active", "rate_active", "{:.1f}"),
        ("start-up s (process start to first request)", "startup_s", "{:.2f}"),
        ("CPU s (user+sys)", "cpu_s", "{:.1f}"),
        ("CPU ms per job", "cpu_ms_per_job", "{:.2f}"),
        ("peak RSS MB", "maxrss_mb", "{:.0f}"),
    ]
    print(
        f"\n{'median of ' + str(ours['reps']) + ' rep(s)':45s} {'bare loop':>10s} "
        f"{'batchrunner':>12s} {'ratio':>7s}"
    )
    for label, key, fmt in rows:
        b, o = base[key], ours[key]
        ratio = f"{o / b:6.0%}" if b and o else "   n/a"
        print(
            f"{label:45s} {fmt.format(b) if b is not None else 'n/a':>10s} "
            f"{fmt.format(o) if o is not None else 'n/a':>12s} {ratio:>7s}"
        )
    print(f"submit alone: {result['submit_wall_s']:.2f} s wall, {result['submit_cpu_s']:.2f} s CPU")


# -- sampling a running process --------------------------------------------------------------------


class Sampler:
    """Every ``interval_s``: the process's VmRSS (``/proc/PID/status``) and ``probe()`` (e.g. jobs done)."""

    def __init__(self, pid: int, probe: Callable[[], int | None], interval_s: float = 0.5) -> None:
        self.pid, self.probe, self.interval_s = pid, probe, interval_s
        self.samples: list[tuple[float, float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = vm_rss_mb(self.pid)
            if rss is None:
                return
            try:
                done = self.probe()
            except sqlite3.Error:
                done = None
            self.samples.append((time.perf_counter() - self._start, rss, done))
            self._stop.wait(self.interval_s)

    def stop(self) -> list[tuple[float, float, int | None]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def vm_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


# -- profiles --------------------------------------------------------------------------------------

PY_SPY = Path(sys.executable).with_name("py-spy")


def start_profiler(out: Path, *, rate: int = 200, idle: bool = False) -> Callable[[int], None]:
    """An ``on_start`` hook: ``py-spy record --pid PID`` (raw collapsed stacks) until the process exits.

    py-spy runs unpinned, so its sampling does not take the client's core.
    """

    def attach(pid: int) -> None:
        argv = [str(PY_SPY), "record", "--pid", str(pid), "-o", str(out), "-f", "raw", "-r", str(rate)]
        argv += ["--threads", "--nonblocking"] + (["--idle"] if idle else [])
        subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return attach


def wait_for_file(path: Path, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            time.sleep(0.2)
            return True
        time.sleep(0.1)
    return False


def profile_summary(path: Path, *, thread: str = "MainThread", top: int = 25) -> dict[str, Any]:
    """Inclusive and self shares of the samples of ``thread`` in a py-spy raw file, by function."""
    import collections
    import re

    line_no = re.compile(r":\d+\)$")
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if thread not in frames[0]:
            continue
        n = int(count)
        total += n
        names = [line_no.sub(")", frame) for frame in frames[1:]]
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
    return {
        "samples": total,
        "inclusive": [(name, n / total) for name, n in inclusive.most_common(top)] if total else [],
        "self": [(name, n / total) for name, n in own.most_common(top)] if total else [],
    }


def print_profile(title: str, summary: dict[str, Any], *, top: int = 25) -> None:
    print(f"\n{title}: {summary['samples']} samples of the main thread")
    for name, share in summary["inclusive"][:top]:
        print(f"  {share:6.1%}  {name}")


# -- the baseline: a bare asyncio loop over the OpenAI SDK -----------------------------------------


def _retry_delay(exc: Exception, attempt: int, rng: random.Random) -> float | None:
    """The baseline's own simple retry rule (module docstring); ``None``: do not retry."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            headers = exc.response.headers
            with contextlib.suppress(TypeError, ValueError):
                if headers.get("retry-after-ms") is not None:
                    return float(headers["retry-after-ms"]) / 1000
                if headers.get("retry-after") is not None:
                    return float(headers["retry-after"])
            return 1.0
        if exc.status_code < 500 and exc.status_code not in (408, 409):
            return None
    elif not isinstance(exc, openai.APIConnectionError):
        return None
    return rng.uniform(0, min(8.0, 0.5 * 2 ** (attempt - 1)))


async def _baseline(
    args: argparse.Namespace, bodies: list[dict[str, Any]], answers: list[str | None]
) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=API_KEY, max_retries=0)
    semaphore = asyncio.Semaphore(args.concurrency)
    rng = random.Random()
    starts: list[float] = []
    ok_starts: list[float] = []
    ok_ends: list[float] = []
    errors: dict[str, int] = {}
    ends: list[float] = []

    async def one(body: dict[str, Any]) -> None:
        async with semaphore:
            for attempt in range(1, args.retries + 2):
                started = time.time()
                starts.append(started)
                try:
                    completion = await client.chat.completions.create(**body)
                except openai.OpenAIError as exc:
                    ends.append(time.time())
                    name = type(exc).__name__
                    errors[name] = errors.get(name, 0) + 1
                    delay = _retry_delay(exc, attempt, rng) if attempt <= args.retries else None
                    if delay is None:
                        return
                    await asyncio.sleep(delay)
                    continue
                ends.append(time.time())
                ok_starts.append(started)
                ok_ends.append(ends[-1])
                answers.append(completion.choices[0].message.content)
                return

    await asyncio.gather(*(one(body) for body in bodies))
    await client.close()
    starts.sort()
    return {
        "jobs": len(bodies),
        "succeeded": len(answers),
        "failed": len(bodies) - len(answers),
        "attempts": len(starts),
        "errors": errors,
        "span_s": (max(ends) - starts[0]) if starts else None,
        "starts": starts,
        "ok_starts": ok_starts,
        "ok_ends": ok_ends,
    }


def baseline_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="run_common.py baseline")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.manifest, "rb") as stream:
        bodies = [json.loads(line)["body"] for line in stream if line.strip()]
    answers: list[str | None] = []
    report = asyncio.run(_baseline(args, bodies, answers))
    with open(Path(args.out).with_suffix(".answers.jsonl"), "w") as out:
        out.writelines(json.dumps(answer) + "\n" for answer in answers)
    Path(args.out).write_text(json.dumps(report))


# -- what-if runs: batchrunner with limiter settings changed at run time (benchmarks only) -----------


def patched_run_main(argv: list[str]) -> None:
    """``patched-run [--pause-jitter S] [--no-halving] [--guard S] [--no-provider-pause] [--storm K/N]
    [--retry-base S] [--retry-factor F] [--trace-store FILE] -- BATCHRUNNER ARGS``.

    Runs the real CLI with the provider limiter's 429 reaction changed, to measure what a proposed change
    to ``ratelimit.py`` would gain. Nothing in the package is edited; this is a benchmark-only launcher.
    """
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="run_common.py patched-run")
    parser.add_argument("--pause-jitter", type=float, help="RateLimits.pause_jitter_s (default 1.0)")
    parser.add_argument("--no-halving", action="store_true", help="min_concurrency = max_concurrency")
    parser.add_argument("--guard", type=float, help="RateLimits.guard_s (default 0.025)")
    parser.add_argument(
        "--storm",
        metavar="K/N",
        help="RateLimits.storm_count/storm_window: pause and halve when K of the last N answers were 429s",
    )
    parser.add_argument("--retry-base", type=float, help="RetryPolicy.base_delay")
    parser.add_argument("--retry-factor", type=float, help="RetryPolicy.factor")
    parser.add_argument(
        "--trace-store", metavar="FILE", help="append (method, start, seconds) of every Store call to FILE"
    )
    parser.add_argument(
        "--no-provider-pause", action="store_true", help="a 429 delays only its own job (retry policy)"
    )
    opts = parser.parse_args(argv[:split])
    import dataclasses

    from batchrunner.config.settings import Settings
    from batchrunner.policy.ratelimit import ProviderLimiter

    original = Settings.rate_limits

    def rate_limits(self: Settings, name: str) -> Any:
        limits = original(self, name)
        changes: dict[str, Any] = {}
        if opts.pause_jitter is not None:
            changes["pause_jitter_s"] = opts.pause_jitter
        if opts.no_halving:
            changes["min_concurrency"] = limits.max_concurrency
        if opts.guard is not None:
            changes["guard_s"] = opts.guard
        if opts.storm:
            changes["storm_count"], changes["storm_window"] = (int(part) for part in opts.storm.split("/"))
        return dataclasses.replace(limits, **changes)

    Settings.rate_limits = rate_limits  # type: ignore[method-assign]
    if opts.no_provider_pause:
        ProviderLimiter.on_rate_limited = lambda self, slot, *, retry_after=None: None  # type: ignore[method-assign]
    if opts.trace_store:
        _trace_store(Path(opts.trace_store))
    retry_changes = {"base_delay": opts.retry_base, "factor": opts.retry_factor}
    retry_changes = {name: value for name, value in retry_changes.items() if value is not None}
    if retry_changes:
        import batchrunner.engine.runner
        from batchrunner.policy.retry import RetryPolicy

        batchrunner.engine.runner.RetryPolicy = functools.partial(RetryPolicy, **retry_changes)  # type: ignore[misc,assignment]
    from batchrunner.cli import main

    sys.argv = ["batchrunner", *argv[split + 1 :]]
    main()


CODE_UNDER_TEST = _snapshot() if __name__ != "__main__" else "inherited (PYTHONPATH)"


def _trace_store(path: Path) -> None:
    """Time every coroutine method of ``Store`` (wall clock, Unix seconds) into ``path``, one JSON line each.

    The first line is the moment the launcher ran (imports done), so start-up can be split into
    interpreter + imports, each store call, and the rest.
    """
    import inspect

    from batchrunner.store.store import Store

    out = path.open("a", buffering=1)
    out.write(json.dumps({"event": "imported", "t": time.time()}) + "\n")

    def wrap(name: str, method: Any) -> Any:
        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            try:
                return await method(*args, **kwargs)
            finally:
                end = time.time()
                out.write(json.dumps({"event": name, "t": start, "s": round(end - start, 6)}) + "\n")

        return timed

    for name, method in list(vars(Store).items()):
        if isinstance(method, classmethod) and inspect.iscoroutinefunction(method.__func__):
            setattr(Store, name, classmethod(wrap(name, method.__func__)))
        elif inspect.iscoroutinefunction(method) and not name.startswith("__"):
            setattr(Store, name, wrap(name, method))


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "baseline":
        baseline_main(rest)
    elif command == "patched-run":
        patched_run_main(rest)
    else:
        raise SystemExit(f"unknown command {command!r} (baseline, patched-run)")
