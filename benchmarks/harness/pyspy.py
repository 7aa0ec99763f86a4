"""Profiles of a running client with py-spy (``pip install py-spy``), for ``--profile``."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PY_SPY = Path(sys.executable).with_name("py-spy")
_LINE_NO = re.compile(r":\d+\)$")


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
    """Wait for py-spy to write its file after the process exited; False if it did not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            time.sleep(0.2)
            return True
        time.sleep(0.1)
    return False


def profile_summary(path: Path, *, thread: str = "MainThread", top: int = 25) -> dict[str, Any]:
    """Inclusive and self shares of the samples of ``thread`` in a py-spy raw file, by function."""
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
        names = [_LINE_NO.sub(")", frame) for frame in frames[1:]]
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
