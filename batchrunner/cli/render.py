"""Text and JSON renderings of library results for the terminal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from batchrunner.models import BatchesSummary, BatchInfo, Percentiles, RunInfo, TimingFigures
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
        "throughput_window_s": round(insights.window_s, 1),
        "eta_s": None if report.eta_s is None else round(report.eta_s, 1),
        "cost_projected_usd": None
        if report.projected_cost_usd is None
        else round(report.projected_cost_usd, 9),
        "batches": [_batch_json(batch) for batch in report.batches.batches],
        "batch_price": _batch_price_json(report.batches),
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
        **timing_json(report.timing),
    }
    return json.dumps(document, indent=2)


def timing_json(timing: TimingFigures) -> dict[str, Any]:
    """``latency_ms`` and ``ttft_ms`` (each ``run`` and ``last_minute``: p50/p95/p99/count, or null) and
    ``throughput_last_minute_per_s``."""

    def figures(value: Percentiles | None) -> dict[str, float | int] | None:
        if value is None:
            return None
        return {"p50": value.p50, "p95": value.p95, "p99": value.p99, "count": value.count}

    return {
        "latency_ms": {
            "run": figures(timing.latency_run),
            "last_minute": figures(timing.latency_last_minute),
        },
        "ttft_ms": {"run": figures(timing.ttft_run), "last_minute": figures(timing.ttft_last_minute)},
        "throughput_last_minute_per_s": round(timing.throughput_last_minute_per_s, 3),
    }


def _timing_lines(timing: TimingFigures) -> list[str]:
    """``latency  p50 312 ms  p95 340  p99 402 (run)  last min 298/330/351`` and the same for TTFT."""
    lines = []
    for label, run, minute in (
        ("latency", timing.latency_run, timing.latency_last_minute),
        ("ttft   ", timing.ttft_run, timing.ttft_last_minute),
    ):
        if run is None and minute is None:
            continue
        line = f"  {label}  "
        if run is not None:
            line += f"p50 {_ms(run.p50)} ms  p95 {_ms(run.p95)}  p99 {_ms(run.p99)} (run)"
        if minute is not None:
            line += ("  " if run is not None else "") + (
                f"last min {_ms(minute.p50)}/{_ms(minute.p95)}/{_ms(minute.p99)}"
            )
        lines.append(line)
    if timing.attempts_last_minute:
        answered, tried = timing.answered_last_minute, timing.attempts_last_minute
        rate = timing.throughput_last_minute_per_s
        lines.append(f"  last min {answered:,} answered of {tried:,} attempts, {rate:,.1f}/s")
    return lines


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _batch_json(batch: BatchInfo) -> dict[str, Any]:
    return {
        "local_id": batch.local_id,
        "provider": batch.provider,
        "model": batch.model,
        "endpoint": batch.endpoint,
        "remote_id": batch.remote_id,
        "state": batch.state.value,
        "remote_status": batch.remote_status,
        "requests": batch.requests,
        "succeeded": batch.succeeded,
        "errored": batch.errored,
        "expired": batch.expired,
        "canceled": batch.canceled,
        "created_at": _iso(batch.created_at),
        "submitted_at": _iso(batch.submitted_at),
        "ended_at": _iso(batch.ended_at),
        "error": batch.error,
    }


def _batch_price_json(summary: BatchesSummary) -> dict[str, Any]:
    share = summary.cost_share
    return {
        "results": summary.batch_results,
        "cost_usd": round(summary.batch_cost_usd, 9),
        "all_results": summary.all_results,
        "all_cost_usd": round(summary.all_cost_usd, 9),
        "cost_share": None if share is None else round(share, 4),
    }


WIDTH: Final = 80
"""``status`` text fits a terminal this wide."""
SHOWN_BATCHES: Final = 6
"""Up to this many batches are shown one by one; beyond, the live ones (as many) and a count of the rest."""
_STATE_LABELS: Final = {"batched": "in provider batches"}


def render_status(report: StatusReport, *, now: datetime | None = None) -> str:
    stats, insights = report.stats, report.insights
    lines = [f"run {stats.run}: {stats.total:,} job(s)", *_state_lines(report)]
    lines += _wrapped(
        [
            f"attempts {stats.attempts:,} (this try {stats.attempts_this_try:,})",
            f"re-sent after interruption {insights.resent_after_interruption:,}",
            f"possibly billed {insights.possibly_billed:,}",
        ]
    )
    lines += [
        f"  tokens   in {stats.input_tokens:,}  out {stats.output_tokens:,}  cached {stats.cached_tokens:,}",
        f"  cost     {_cost(report)}",
    ]
    if report.live and insights.throughput_per_s:
        eta = f"  eta {_duration(report.eta_s)}" if report.eta_s is not None else ""
        lines.append(
            f"  rate     {insights.throughput_per_s * 60:,.1f} jobs/min (last {insights.window_s:.0f} s){eta}"
        )
    lines += _timing_lines(report.timing)
    if stats.first_activity:
        lines.append(f"  activity {_iso(stats.first_activity)} .. {_iso(stats.last_activity)}")
    if stats.top_errors:
        lines.append("  errors   " + ", ".join(f"{cls} x{n}" for cls, n in stats.top_errors))
    moment = now or datetime.now(UTC)
    lines += _batch_lines(report.batches, moment)
    for runner in insights.runners:
        state = "live" if runner.alive else "dead"
        lines.append(
            _fit(f"  runner   {state}: {runner.host} pid {runner.pid}, holds {runner.jobs_held:,} job(s)")
        )
        beat = max((moment - runner.heartbeat_at).total_seconds(), 0.0)
        lines.append(f"{' ' * 11}started {_seconds(runner.started_at)}  heartbeat {_duration(beat)} ago")
        if runner.limits:
            lines.append(_fit(" " * 11 + f"limits {json.dumps(runner.limits)}"))
    return "\n".join(lines)


def _seconds(value: datetime) -> str:
    """A time to the second (``status`` is read by people; ``--json`` keeps the microseconds)."""
    return value.replace(microsecond=0).isoformat()


def _wrapped(cells: list[str], indent: str = "  ") -> list[str]:
    """The cells on lines of at most :data:`WIDTH`, two spaces apart, each line indented."""
    lines = [indent + cells[0]]
    for cell in cells[1:]:
        if len(lines[-1]) + 2 + len(cell) > WIDTH:
            lines.append(indent + cell)
        else:
            lines[-1] += "  " + cell
    return lines


def _state_lines(report: StatusReport) -> list[str]:
    """The counts by state, wrapped to :data:`WIDTH`; jobs in provider batches only in a run with some."""
    by_state = report.stats.by_state
    cells = [
        f"{_STATE_LABELS.get(state, state)} {count:,}"
        for state, count in by_state.items()
        if state != "batched" or count or report.batches.batches
    ]
    return _wrapped(cells)


def _batch_lines(summary: BatchesSummary, now: datetime) -> list[str]:
    """The run's provider batches (all of a few, else the live ones and a count of the rest) and what
    was paid at batch price."""
    batches = summary.batches
    if not batches and not summary.batch_results:
        return []
    live = summary.live
    lines = [f"  batches  {len(batches)} provider batch(es), {len(live)} live"]
    shown = batches if len(batches) <= SHOWN_BATCHES else live[:SHOWN_BATCHES]
    for batch in shown:
        lines += _batch_view(batch, now)
    rest = [batch for batch in batches if batch not in shown]
    if rest:
        counts: dict[str, int] = {}
        for batch in rest:
            counts[batch.state.value] = counts.get(batch.state.value, 0) + 1
        states = ", ".join(f"{state} {n}" for state, n in counts.items())
        lines.append(f"    and {len(rest)} more ({states})")
    lines.append("  " + _batch_price(summary))
    return [_fit(line) for line in lines]


def _batch_view(batch: BatchInfo, now: datetime) -> list[str]:
    what = f"{batch.provider}/{batch.model}" if batch.model else batch.provider
    state = batch.state.value + (f" ({batch.remote_status})" if batch.remote_status else "")
    age = _duration(max((now - batch.created_at).total_seconds(), 0.0))
    return [
        f"    {batch.local_id}  {state}  age {age}  {what}",  # a long model name is what gets cut
        f"      provider id {batch.remote_id or '- (not submitted yet)'}",
        f"      requests {batch.requests:,}  succeeded {batch.succeeded:,}  errored {batch.errored:,}  "
        f"expired {batch.expired:,}  canceled {batch.canceled:,}",
    ]


def _batch_price(summary: BatchesSummary) -> str:
    share = summary.cost_share
    percent = "" if share is None else f" ({share:.0%})"
    return (
        f"batch price  {summary.batch_results:,} of {summary.all_results:,} result(s), "
        f"{format_usd(summary.batch_cost_usd)} of {format_usd(summary.all_cost_usd)}{percent}"
    )


def _fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 3] + "..."


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
