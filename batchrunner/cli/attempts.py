"""``batchrunner attempts``: what happened to a job, or the latest attempts of a run, without SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from batchrunner.cli.common import (
    config_option,
    db_option,
    log_format_option,
    resolve_settings,
    run_option,
    run_verb,
    verbose_option,
)

if TYPE_CHECKING:
    from batchrunner.models import AttemptRow

MESSAGE_WIDTH = 76
"""An error message is cut to this, with its full text in ``--json`` (80 columns with the indent)."""


@click.command("attempts")
@run_option
@click.option("--job", metavar="ID", help="Only this job's attempts (its custom_id, as in the export).")
@click.option("--failed", is_flag=True, help="Only attempts that failed (an error class was recorded).")
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="The latest N attempts."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per attempt (stable keys) on stdout.")
@db_option
@config_option
@verbose_option
@log_format_option
def attempts(
    run_name: str | None,
    job: str | None,
    failed: bool,
    limit: int,
    as_json: bool,
    db: str | None,
    config_path: Path | None,
    verbose: bool,
) -> None:
    """The latest attempts of a run, newest first: status, error, latency, tokens, request id.

    \b
    batchrunner attempts --job a17      what happened to job a17
    batchrunner attempts --failed -n 50 the latest 50 failures
    """
    from batchrunner import api

    settings = resolve_settings({"db": db}, config_path, verbose)
    rows = run_verb(
        api.attempts(settings=settings, run=run_name, job=job, failed=failed, limit=limit), verbose
    )
    if as_json:
        for row in rows:
            click.echo(json.dumps(attempt_json(row), ensure_ascii=False))
        return
    click.echo(render_attempts(rows))


def attempt_json(row: AttemptRow) -> dict[str, object]:
    return {
        "custom_id": row.custom_id,
        "attempt": row.number,
        "provider": row.provider,
        "model": row.model,
        "runner": row.runner_id,
        "started_at": row.started_at.isoformat(),
        "finished_at": None if row.finished_at is None else row.finished_at.isoformat(),
        "status": row.status_code,
        "error_class": row.error_class,
        "error": row.error_message,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "possibly_billed": row.possibly_billed,
        "request_id": row.request_id,
    }


def render_attempts(rows: list[AttemptRow]) -> str:
    """Two lines an attempt, within 80 columns: what and when, then how it went."""
    if not rows:
        return "no attempts"
    lines = []
    for row in rows:
        when = row.started_at.strftime("%Y-%m-%d %H:%M:%S")
        status = "no status" if row.status_code is None else f"HTTP {row.status_code}"
        outcome = row.error_class or "ok"
        lines.append(f"{row.custom_id} #{row.number}  {when}  {status} {outcome}  {row.provider}")
        figures = [f"{row.latency_ms:,.0f} ms"] if row.latency_ms is not None else []
        if row.ttft_ms is not None:
            figures.append(f"ttft {row.ttft_ms:,.0f} ms")
        if row.input_tokens is not None or row.output_tokens is not None:
            figures.append(f"tokens {row.input_tokens or 0:,}/{row.output_tokens or 0:,}")
        if row.possibly_billed:
            figures.append("possibly billed")
        if row.request_id:
            figures.append(row.request_id)
        if figures:
            lines.append("  " + "  ".join(figures))
        if row.error_message:
            message = " ".join(row.error_message.split())
            cut = message if len(message) <= MESSAGE_WIDTH else message[: MESSAGE_WIDTH - 3] + "..."
            lines.append(f"  {cut}")
    return "\n".join(lines)
