"""Repetitions: every client once a round, the order rotating to spread drift; one line a run; medians."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from harness.clients import RunResult
from harness.measures import median


def alternate(
    reps: int, clients: dict[str, Callable[[], RunResult]], log: Callable[[str], None] = print
) -> dict[str, list[RunResult]]:
    """``reps`` rounds of every client, the order rotating each round (A B, B A, ...)."""
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
    """One run on one line: times, rates, CPU, memory, answers, requests by status, duplicates, exit."""
    active = f"{r.active_s:6.2f}s" if r.active_s else "   n/a"
    rate = f"{r.rate_active:7.1f}/s" if r.rate_active else "     n/a"
    cap = f" CAPPED(stop {r.stop_s:.1f}s)" if r.capped else ""
    return (
        f"wall {r.wall_s:6.2f}s ({r.rate_wall:7.1f}/s)  active {active} ({rate})  startup "
        f"{(r.startup_s or 0):4.2f}s  cpu {r.cpu_s:5.1f}s  rss {r.maxrss_mb:4.0f}MB  "
        f"ok {r.succeeded}/{r.jobs} "
        f"req {r.requests} {dict(sorted(r.by_status.items()))} dup {r.duplicates} exit {r.exit_code}{cap}"
    )


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
