"""What every result records about where it was measured: the machine, its load, the code."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

from harness import pinning, snapshot


def machine_info(pinned: bool) -> dict[str, Any]:
    """The machine, the software, the commit and the code under test, the pinning, the load now."""
    import openai

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "ram": ram(),
        "python": platform.python_version(),
        "openai": openai.__version__,
        "commit": snapshot.git("rev-parse", "--short", "HEAD"),
        "code": snapshot.activate(),
        "pinning": pinning.describe(pinned),
        "load_before": loadavg(),
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def ram() -> str:
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        return f"{kb / 1024 / 1024:.1f} GiB"
    return "?"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages ('?' off Linux)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
