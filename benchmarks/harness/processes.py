"""Child processes, timed and sampled: wall time from ``Popen`` to exit, CPU time and peak RSS from
``os.wait4`` (that child alone, so one run's peak never hides another's), VmRSS while it runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import snapshot
from harness.paths import API_KEY, BENCHMARKS


@dataclass
class Exited:
    """How a child process ended and what it cost."""

    code: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float
    start_epoch: float
    capped: bool = False
    """Stopped (SIGINT) by the time cap before it finished."""
    stop_s: float | None = None
    """With ``capped``: seconds from the SIGINT to the exit."""


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
    """Run ``argv`` (stderr to ``cwd/stderr.txt``); SIGINT it after ``cap_s``, SIGKILL ``grace_s`` later."""
    start_epoch, start = time.time(), time.perf_counter()
    with open(cwd / "stderr.txt", "w") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=err)
    if on_start is not None:
        on_start(proc.pid)
    sent = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter()
        if cap_s is not None and sent is None and now - start > cap_s:
            proc.send_signal(signal.SIGINT)
            sent = now
        if sent is not None and now - sent > grace_s:
            proc.kill()
        time.sleep(0.005)
    end = time.perf_counter()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Exited(
        code=proc.returncode,
        wall_s=end - start,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024,
        start_epoch=start_epoch,
        capped=sent is not None,
        stop_s=None if sent is None else end - sent,
    )


def client_env() -> dict[str, str]:
    """The environment of a client: no ``BATCHRUNNER_*``/provider variables of ours, a dummy key, the
    code under test first on ``PYTHONPATH``."""
    snapshot.activate()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHRUNNER_", "OPENAI_", "ANTHROPIC_"))}
    env.update({"OPENAI_API_KEY": API_KEY, "PYTHONUNBUFFERED": "1"})
    return env


def harness_env() -> dict[str, str]:
    """:func:`client_env` for ``python -m harness.NAME``: ``benchmarks/`` on ``PYTHONPATH`` after the
    code under test."""
    env = client_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(BENCHMARKS)]))
    return env


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
    """The resident set of ``pid`` now, in MB (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None
