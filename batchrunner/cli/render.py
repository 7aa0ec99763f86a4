"""Text and JSON renderings of library results for the terminal."""

from __future__ import annotations

import json
from datetime import datetime

from batchrunner.models import RunInfo
from batchrunner.store.records import RunStats


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_json(stats: RunStats) -> str:
    """The stable, machine-readable form of ``status``."""
    document = {
        "run": stats.run,
        "total": stats.total,
        "states": stats.by_state,
        "attempts": stats.attempts,
        "tokens": {"input": stats.input_tokens, "output": stats.output_tokens, "cached": stats.cached_tokens},
        "cost_usd": round(stats.cost_usd, 6),
        "priced_results": stats.priced_results,
        "first_activity": _iso(stats.first_activity),
        "last_activity": _iso(stats.last_activity),
        "top_errors": [{"class": cls, "count": n} for cls, n in stats.top_errors],
    }
    return json.dumps(document, indent=2)


def render_status(stats: RunStats) -> str:
    states = "  ".join(f"{state} {count}" for state, count in stats.by_state.items())
    lines = [
        f"run {stats.run}: {stats.total} job(s)",
        f"  {states}",
        f"  attempts {stats.attempts}",
        f"  tokens   in {stats.input_tokens:,}  out {stats.output_tokens:,}  cached {stats.cached_tokens:,}",
        f"  cost     ${stats.cost_usd:,.4f}",
    ]
    if stats.first_activity:
        lines.append(f"  activity {_iso(stats.first_activity)} .. {_iso(stats.last_activity)}")
    if stats.top_errors:
        lines.append("  errors   " + ", ".join(f"{cls} x{n}" for cls, n in stats.top_errors))
    return "\n".join(lines)


def render_runs(runs: list[RunInfo]) -> str:
    if not runs:
        return "no runs yet"
    width = max(len(run.name) for run in runs)
    return "\n".join(
        f"{run.name:<{width}}  {run.jobs:>9} job(s)  created {_iso(run.created_at)}  {run.source or ''}"
        for run in runs
    )
