"""Reporting: the side-by-side table of both clients, verdicts, and the saved results file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.paths import RESULTS_DIR

_ROWS = [
    ("wall s (process start to exit)", "wall_s", "{:.2f}"),
    ("jobs/s on wall", "rate_wall", "{:.1f}"),
    ("active s (first request to last answer)", "active_s", "{:.2f}"),
    ("jobs/s on active", "rate_active", "{:.1f}"),
    ("start-up s (process start to first request)", "startup_s", "{:.2f}"),
    ("CPU s (user+sys)", "cpu_s", "{:.1f}"),
    ("CPU ms per job", "cpu_ms_per_job", "{:.2f}"),
    ("peak RSS MB", "maxrss_mb", "{:.0f}"),
]


def print_pair(result: dict[str, Any]) -> None:
    """The medians of both clients side by side, and the time of submit alone."""
    base, ours = result["baseline"], result["batchrunner"]
    print(
        f"\n{'median of ' + str(ours['reps']) + ' rep(s)':45s} {'bare loop':>10s} "
        f"{'batchrunner':>12s} {'ratio':>7s}"
    )
    for label, key, fmt in _ROWS:
        b, o = base[key], ours[key]
        ratio = f"{o / b:6.0%}" if b and o else "   n/a"
        print(
            f"{label:45s} {fmt.format(b) if b is not None else 'n/a':>10s} "
            f"{fmt.format(o) if o is not None else 'n/a':>12s} {ratio:>7s}"
        )
    print(f"submit alone: {result['submit_wall_s']:.2f} s wall, {result['submit_cpu_s']:.2f} s CPU")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/data/run_results/NAME.json`` (the figures BENCHMARKS.md quotes)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def result_name(base: str, args: argparse.Namespace) -> str:
    """``base``, ``base-quick``, ``base-LABEL``: the name of the saved results file."""
    return "-".join(part for part in (base, "quick" if args.quick else "", args.label) if part)
