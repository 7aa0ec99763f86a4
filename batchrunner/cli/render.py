"""Text and JSON renderings of library results for the terminal."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from batchrunner.models import RunInfo
from batchrunner.policy.pricing import format_usd

if TYPE_CHECKING:
    from batchrunner.api import StatusReport


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_json(report: StatusReport) -> str:
    """The stable, machine-readable form of ``status``."""
    stats, insights = report.stats, report.insights
    document = {
        "run": stats.run,
        "total": stats.total,
        "states": stats.by_state,
        "attempts": stats.attempts,
        "attempts_this_try": stats.attempts_this_try,
        "tokens": {"input": stats.input_tokens, "output": stats.output_tokens, "cached": stats.cached_tokens},
        "cost_usd": round(stats.cost_usd, 9) if stats.cost_known else None,
        "cost_priced_usd": round(stats.cost_usd, 9),
        "priced_results": stats.priced_results,
        "unpriced_results": stats.unpriced_results,
        "first_activity": _iso(stats.first_activity),
        "last_activity": _iso(stats.last_activity),
        "top_errors": [{"class": cls, "count": n} for cls, n in stats.top_errors],
        "throughput_per_s": round(insights.throughput_per_s, 3),
        "eta_s": None if report.eta_s is None else round(report.eta_s, 1),
        "cost_projected_usd": None
        if report.projected_cost_usd is None
        else round(report.projected_cost_usd, 9),
        "resent_after_interruption": insights.resent_after_interruption,
        "possibly_billed": insights.possibly_billed,
        "runners": [
            {
                "id": r.id,
                "host": r.host,
                "pid": r.pid,
                "alive": r.alive,
                "jobs_held": r.jobs_held,
                "started_at": _iso(r.started_at),
                "heartbeat_at": _iso(r.heartbeat_at),
                "limits": r.limits,
            }
            for r in insights.runners
        ],
    }
    return json.dumps(document, indent=2)


def render_status(report: StatusReport) -> str:
    stats, insights = report.stats, report.insights
    states = "  ".join(f"{state} {count}" for state, count in stats.by_state.items())
    lines = [
        f"run {stats.run}: {stats.total} job(s)",
        f"  {states}",
        f"  attempts {stats.attempts} (this try {stats.attempts_this_try})  re-sent after interruption "
        f"{insights.resent_after_interruption}  possibly billed {insights.possibly_billed}",
        f"  tokens   in {stats.input_tokens:,}  out {stats.output_tokens:,}  cached {stats.cached_tokens:,}",
        f"  cost     {_cost(report)}",
    ]
    if report.live and insights.throughput_per_s:
        eta = f"  eta {_duration(report.eta_s)}" if report.eta_s is not None else ""
        lines.append(
            f"  rate     {insights.throughput_per_s * 60:,.1f} jobs/min (last {insights.window_s:.0f} s){eta}"
        )
    if stats.first_activity:
        lines.append(f"  activity {_iso(stats.first_activity)} .. {_iso(stats.last_activity)}")
    if stats.top_errors:
        lines.append("  errors   " + ", ".join(f"{cls} x{n}" for cls, n in stats.top_errors))
    for runner in insights.runners:
        limits = f"  limits {json.dumps(runner.limits)}" if runner.limits else ""
        state = "live" if runner.alive else "dead"
        lines.append(
            f"  runner   {state}: {runner.host} pid {runner.pid}, holds {runner.jobs_held} job(s), "
            f"started {_iso(runner.started_at)}, heartbeat {_iso(runner.heartbeat_at)}{limits}"
        )
    return "\n".join(lines)


def _cost(report: StatusReport) -> str:
    """The cost, or why it is unknown; never ``$0.0000`` for money that was spent."""
    stats = report.stats
    if not stats.cost_known:
        known = f"{format_usd(stats.cost_usd)} priced + " if stats.priced_results else ""
        return f"{known}unknown ({stats.unpriced_results} result(s) without a price)"
    cost = format_usd(stats.cost_usd)
    if report.projected_cost_usd is not None and report.remaining:
        cost += f"  (projected {format_usd(report.projected_cost_usd)})"
    return cost


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_runs(runs: list[RunInfo]) -> str:
    if not runs:
        return "no runs yet"
    width = max(len(run.name) for run in runs)
    return "\n".join(
        f"{run.name:<{width}}  {run.jobs:>9} job(s)  created {_iso(run.created_at)}  {run.source or ''}"
        for run in runs
    )
