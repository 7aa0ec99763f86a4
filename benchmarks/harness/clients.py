"""The two clients, each run as a subprocess against a :class:`~harness.server.Server`: a :class:`RunResult`.

- **ours** (:func:`run_ours`): ``batchrunner run FILE --base-url URL --concurrency N [--rpm R] --db DB
  --no-progress`` in a fresh temporary directory (so no ``batchrunner.toml`` or ``.env`` is picked up) with
  a fresh database; with a ``launcher``, the same run through ``python -m harness.launcher`` (a what-if).
- **baseline** (:func:`run_baseline`): ``python -m harness.baseline_client`` (the bare-SDK loop; its
  docstring says exactly what it does).

Timing of one run:

- ``wall_s``: from ``Popen`` to the process's exit (Python start-up, imports, submit, run, shutdown);
- ``active_s``: the fake server's ``answer_span_s``, from the first request it received to the last
  answer it sent (the same clock for both clients);
- ``startup_s``: from ``Popen`` to the client's first request (ours: the earliest ``attempts.started_at``;
  baseline: its own clock); ``cpu_s`` and ``maxrss_mb`` from ``os.wait4`` (that child alone).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import measures, pinning, pyspy
from harness.processes import Exited, client_env, harness_env, run_process
from harness.server import Server


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


def _result(
    who: str,
    done: Exited,
    stats: dict[str, Any],
    *,
    jobs: int,
    succeeded: int,
    failed: int,
    first: float | None,
) -> RunResult:
    """The parts of a :class:`RunResult` both clients fill alike (the process and the server's books)."""
    return RunResult(
        who=who,
        jobs=jobs,
        exit_code=done.code,
        wall_s=done.wall_s,
        active_s=stats.get("answer_span_s"),
        startup_s=None if first is None else first - done.start_epoch,
        cpu_s=done.cpu_s,
        maxrss_mb=done.maxrss_mb,
        succeeded=succeeded,
        failed=failed,
        other=jobs - succeeded - failed,
        requests=stats["requests"],
        by_status=stats["by_status"],
        duplicates=stats["duplicates"],
        limit_violations=stats["limit_violations"],
        peak_concurrency=stats["peak_concurrency"],
        capped=done.capped,
        stop_s=done.stop_s,
    )


def batchrunner_argv(*args: str, launcher: Sequence[str] = ()) -> list[str]:
    """``python -m batchrunner ARGS``; with ``launcher``, ``python -m harness.launcher LAUNCHER -- ARGS``."""
    if launcher:
        return [sys.executable, "-m", "harness.launcher", *launcher, "--", *args]
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
            pinning.pin(pinning.CLIENT_CPU, batchrunner_argv(*args, launcher=launcher), pinned),
            cwd=work,
            env=harness_env() if launcher else client_env(),
            cap_s=cap_s,
            on_start=None if profile is None else pyspy.start_profiler(profile),
        )
        stats = server.stats()
        facts = measures.db_facts(db)
        stderr = (work / "stderr.txt").read_text()[-2000:]
    states, first = facts.states, facts.first
    jobs = sum(states.values())
    result = _result(
        who,
        done,
        stats,
        jobs=jobs,
        succeeded=states.get("succeeded", 0),
        failed=states.get("failed", 0),
        first=first,
    )
    result.extra = {
        "client_span_s": None if first is None or facts.last is None else facts.last - first,
        "start_slope_per_s": measures.slope(facts.starts),
        "ok_slope_per_s": measures.slope(facts.ok_starts),
        "done_at_s": measures.done_at(first, facts.ok_ends, jobs),
        "stderr_tail": stderr if done.code not in (0, 130) else "",
    }
    return result


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
    """The bare-SDK asyncio loop (:mod:`harness.baseline_client`) as a subprocess against ``server``."""
    server.reset()
    with tempfile.TemporaryDirectory(prefix="br-bench-") as tmp:
        work = Path(tmp)
        out = work / "baseline.json"
        argv = [sys.executable, "-m", "harness.baseline_client", "--manifest", str(manifest)]
        argv += ["--base-url", server.url, "--concurrency", str(concurrency), "--retries", str(retries)]
        argv += ["--out", str(out)]
        done = run_process(
            pinning.pin(pinning.CLIENT_CPU, argv, pinned),
            cwd=work,
            env=harness_env(),
            cap_s=cap_s,
            on_start=None if profile is None else pyspy.start_profiler(profile),
        )
        stats = server.stats()
        report = json.loads(out.read_text()) if out.exists() else {}
        stderr = (work / "stderr.txt").read_text()[-2000:]
    starts = report.get("starts", [])
    first = starts[0] if starts else None
    jobs = report.get("jobs", 0)
    result = _result(
        who,
        done,
        stats,
        jobs=jobs,
        succeeded=report.get("succeeded", 0),
        failed=report.get("failed", 0),
        first=first,
    )
    result.extra = {
        "client_span_s": report.get("span_s"),
        "start_slope_per_s": measures.slope(starts),
        "ok_slope_per_s": measures.slope(sorted(report.get("ok_starts", []))),
        "done_at_s": measures.done_at(first, sorted(report.get("ok_ends", [])), jobs),
        "errors": report.get("errors", {}),
        "stderr_tail": stderr if done.code else "",
    }
    return result


def submit_time(manifest: Path, *, pinned: bool = True, provider: str | None = None) -> Exited:
    """``batchrunner submit FILE`` alone into a fresh database: the submit part of ``run FILE``."""
    with tempfile.TemporaryDirectory(prefix="br-bench-") as tmp:
        args = ["submit", str(manifest), "--db", str(Path(tmp) / "s.db")]
        if provider:
            args += ["--provider", provider]
        argv = pinning.pin(pinning.CLIENT_CPU, batchrunner_argv(*args), pinned)
        return run_process(argv, cwd=Path(tmp), env=client_env())
