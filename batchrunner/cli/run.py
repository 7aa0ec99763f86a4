"""``batchrunner run``: parse flags, resolve settings once, call ``api.run``, print, exit with its code."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Coroutine
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchrunner.cli.common import (
    EXIT_INTERRUPTED,
    config_option,
    from_group,
    log_format_option,
    resolve_settings,
    run_verb,
)
from batchrunner.cli.logs import current_format, say

if TYPE_CHECKING:
    from batchrunner.api import RunReport
    from batchrunner.config import Settings

CRASH_VARIABLE = "BATCHRUNNER_TEST_CRASH_AT"
"""Test-only: kill the runner at a named point (see batchrunner.engine.crashpoints)."""


def _env(name: str) -> dict[str, Any]:
    return {"envvar": f"BATCHRUNNER_{name}", "show_envvar": True}


@click.command("run")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--run",
    "run_name",
    metavar="NAME",
    help="The run to drain [default: FILE's run (FILE's name without its extension), else the latest].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Requests in flight at most [default: 32].",
    **_env("CONCURRENCY"),
)
@click.option(
    "--rpm",
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per minute, per provider.",
    **_env("RPM"),
)
@click.option(
    "--tpm",
    type=click.FloatRange(min=0, min_open=True),
    help="Tokens per minute, per provider.",
    **_env("TPM"),
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    help="Attempts per job [default: 6].",
    **_env("MAX_ATTEMPTS"),
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds per attempt [default: 300].",
    **_env("TIMEOUT"),
)
@click.option(
    "--max-cost",
    "max_cost_usd",
    type=click.FloatRange(min=0),
    help="Stop before spending more than this many USD (exit 3).",
    **_env("MAX_COST"),
)
@click.option(
    "--provider",
    help="Provider for lines that name none (openai, anthropic, fake, gemini, cohere, or a configured one).",
    **_env("PROVIDER"),
)
@click.option("--model", help="Model for simple lines that name none.", **_env("MODEL"))
@click.option(
    "--base-url", help="Base URL for the run's providers (any OpenAI-compatible server).", **_env("BASE_URL")
)
@click.option(
    "--no-stop-on-systematic",
    is_flag=True,
    default=None,
    help="Do not stop when a provider+model's first 20 answers all fail alike (404 model_not_found ...): "
    "fail those jobs one by one.",
    **_env("NO_STOP_ON_SYSTEMATIC"),
)
@click.option(
    "--transport",
    type=click.Choice(["http", "sdk"]),
    help="How to speak to OpenAI and Anthropic: http (aiohttp, fast) or sdk (the official SDKs) "
    "[default: http].",
    **_env("TRANSPORT"),
)
@config_option
@click.option(
    "--db",
    callback=from_group,
    help="Job database: a SQLite path or a SQLAlchemy URL [default: batchrunner.db].",
    **_env("DB"),
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="With FILE: queue its valid lines and write the invalid ones to FILE.rejects.jsonl "
    "(a run submitted so is resumed so without it).",
)
@click.option(
    "--mode",
    type=click.Choice(["realtime", "batch"]),
    default="realtime",
    show_default=True,
    help="batch: send the jobs of providers with a batch API (openai, anthropic) as provider batches, "
    "at half price and up to 24 h; the others run in real time (docs/batch.md).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Batch mode: at most this many requests per provider batch [default: the provider's limit].",
)
@click.option(
    "--poll-interval",
    "poll_s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds between polls of live provider batches (a Retry-After is honoured).",
)
@click.option("--no-wait", is_flag=True, help="Batch mode: submit the batches and exit at once.")
@click.option(
    "--deadline",
    metavar="DURATION",
    help="Batch mode: when this long has passed (90s, 30m, 2h), cancel the batches still running, "
    "record their finished lines and run the rest in real time.",
)
@click.option(
    "--spill",
    type=click.Choice(["realtime", "none"]),
    default="none",
    show_default=True,
    help="Batch mode: run the jobs the batches did not answer (expired, cancelled) in real time.",
)
@click.option(
    "--dashboard",
    is_flag=True,
    help="Serve the live dashboard (batchrunner dashboard) on 127.0.0.1 beside the run; its URL is printed.",
)
@click.option(
    "--dashboard-port",
    type=click.IntRange(min=0, max=65535),
    default=8765,
    show_default=True,
    help="The dashboard's port (0: a free one).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what the run would cost and take (as batchrunner estimate) and exit: nothing is queued "
    "or sent.",
)
@click.option("--no-progress", is_flag=True, help="No progress output.")
@click.option(
    "-v",
    "--verbose",
    count=True,
    callback=from_group,
    help="More logging (-vv: every attempt); tracebacks on errors.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@log_format_option
def run(
    file: str | None,
    run_name: str | None,
    config_path: Path | None,
    skip_invalid: bool,
    mode: str,
    batch_size: int | None,
    poll_s: float,
    no_wait: bool,
    deadline: str | None,
    spill: str,
    dashboard: bool,
    dashboard_port: int,
    dry_run: bool,
    no_progress: bool,
    verbose: int,
    quiet: bool,
    **flags: Any,
) -> None:
    """Drain a run: call the provider for every pending job, within its rate limits, with retries.

    \b
    batchrunner run jobs.jsonl --provider fake    submit (if not yet) and run, no key needed
    batchrunner run                               resume the latest run where it stopped

    A run remembers the settings it was first run with (base URL, key variable, limits, concurrency,
    attempts, timeout, max cost) and is resumed with them; a flag given later overrides them for that
    invocation, and says so. --provider on a submitted run sends its pending jobs to that provider.

    Finished jobs are never sent again. Ctrl-C stops gracefully (calls in flight finish, results are
    saved; exit 130); run again to resume. Exit codes: 0 all succeeded, 1 some failed, 2 bad input,
    3 stopped (auth, quota, budget, cancel, the same permanent error on every job), 130 interrupted.
    """
    from batchrunner import api  # the engine and the SDK adapters: only once the command runs

    _configure_logging(verbose, quiet)
    if flags.get("max_cost_usd") is not None:
        flags["max_cost_usd"] = Decimal(str(flags["max_cost_usd"]))
    settings = resolve_settings(flags, config_path, verbose > 0)
    if dry_run:
        _dry_run(file, run_name, settings, verbose > 0, mode)
        return
    if mode != "batch" and (batch_size or no_wait or deadline or spill != "none"):
        raise click.UsageError("--batch-size, --no-wait, --deadline and --spill go with --mode batch")
    batch = api.BatchMode(
        batch_size=batch_size,
        poll_s=poll_s,
        wait=not no_wait,
        deadline_s=None if deadline is None else parse_duration(deadline),
        spill=spill == "realtime",
    )
    progress = None
    if not (no_progress or quiet or current_format() == "json"):  # a progress line is not a JSON object
        progress = api.ProgressOptions(stream=sys.stderr, live=sys.stderr.isatty())
    running = api.run(
        file,
        settings=settings,
        run=run_name,
        skip_invalid=skip_invalid,
        progress=progress,
        handle_signals=True,
        crash_at=os.environ.get(CRASH_VARIABLE),
        notify=lambda message: say(message, event="notice"),
        mode=mode,  # type: ignore[arg-type]  # click.Choice
        batch=batch,
    )
    if dashboard:
        running = _beside_dashboard(running, settings, run_name, dashboard_port)
    report = run_verb(running, verbose > 0)
    for line in summary_lines(report, quiet=quiet):
        say(line, event="summary", run=report.stats.run, state=_states(report))
    sys.exit(EXIT_INTERRUPTED if report.interrupted else report.exit_code)


async def _beside_dashboard(
    running: Coroutine[Any, Any, RunReport], settings: Settings, run_name: str | None, port: int
) -> RunReport:
    """The run, with the dashboard served in the same loop until it ends (``run=None``: the latest run,
    which is the one this command submits or resumes)."""
    from batchrunner.cli.dashboard import status_fields
    from batchrunner.dashboard.server import start_dashboard

    try:
        async with start_dashboard(settings, run=run_name, port=port, status_fields=status_fields) as url:
            say(f"dashboard: {url}", event="dashboard", url=url)
            return await running
    finally:
        running.close()  # never awaited when the dashboard could not start: no "never awaited" warning


def _states(report: RunReport) -> dict[str, int]:
    return {state: count for state, count in report.stats.by_state.items() if count}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` or plain seconds, as seconds; a UsageError otherwise."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    value = text.strip().lower()
    factor = units.get(value[-1:])
    number = value[:-1] if factor is not None else value
    try:
        seconds = float(number) * (factor or 1.0)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a duration (such as 90s, 30m, 2h)", param_hint="--deadline"
        ) from None
    if not seconds > 0 or seconds != seconds:
        raise click.BadParameter(f"{text!r} must be a positive duration", param_hint="--deadline")
    return seconds


def _dry_run(file: str | None, run_name: str | None, settings: Settings, verbose: bool, mode: str) -> None:
    """``--dry-run``: FILE's jobs (not queued), else the run's pending ones, estimated; nothing is sent."""
    from batchrunner import api
    from batchrunner.cli.estimate import render_estimate

    estimate = run_verb(
        api.estimate(file, settings=settings, run=None if file else run_name, mode=mode),  # type: ignore[arg-type]
        verbose,
    )
    heading = f"{file}: {estimate.jobs:,} job(s)" if file else f"{estimate.jobs:,} pending job(s)"
    click.echo(render_estimate(estimate, f"dry run, {heading}"))


def summary_lines(report: RunReport, *, quiet: bool) -> list[str]:
    """How the run ended, with hints that do what they say when pasted as they are."""
    stats = report.stats
    again = command("run", report)
    waiting = (
        f"{report.batches_live} provider batch(es) still running at the provider; to pick them up: {again}"
        if report.batches_live
        else None
    )
    if report.interrupted:
        return [f"interrupted: results so far are saved; to resume: {again}", *([waiting] if waiting else [])]
    counts = ", ".join(
        f"{stats.by_state[state]} {state}"
        for state in ("succeeded", "failed", "pending", "cancelled")
        if stats.by_state[state] or state in ("succeeded", "failed")
    )
    lines = [f"stopped: {report.stopped}"] if report.stopped else []
    if quiet and not report.stopped:
        return lines
    lines.append(f"run {stats.run!r}: {counts}")
    if waiting:
        lines.append(waiting)
    elif stats.by_state["pending"] and not report.cancelled:
        lines.append(f"to resume: {again}")
    if stats.by_state["succeeded"] or stats.by_state["failed"]:
        lines.append(f"export with: {command('export', report)} --format csv -o results.csv")
    return lines


def command(verb: str, report: RunReport) -> str:
    """``batchrunner VERB`` for this run: ``--run`` when the database holds others, ``--db`` when it is not
    the default one."""
    words = ["batchrunner", verb]
    if report.runs_in_db > 1:
        words += ["--run", report.stats.run]
    from batchrunner.api.session import DEFAULT_DB

    if report.db is not None and report.db != DEFAULT_DB:
        words += ["--db", report.db]
    return shlex.join(words)


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR
        if quiet
        else logging.WARNING
        if verbose == 0
        else logging.INFO
        if verbose == 1
        else logging.DEBUG
    )
    logging.getLogger("batchrunner").setLevel(level)
