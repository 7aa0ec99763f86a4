"""The ``batchrunner`` command line: click commands only, each a thin shell over a library verb.

Data goes to stdout, talk to stderr. Errors cross one boundary (``common.error_boundary``): a one-line
reason on stderr and a distinct exit code; the traceback only with ``-v``.
"""

from __future__ import annotations

import shlex
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
from batchrunner.cli.logs import LOG_FORMATS, LogFormat, configure, say
from batchrunner.cli.render import render_runs, render_status, status_json

if TYPE_CHECKING:  # the verbs are imported when a command runs, so that --help stays light
    from batchrunner import api
    from batchrunner.config import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchrunner")
@click.option("--db", metavar="PATH|URL", help="The job database, for any command (as each command's --db).")
@click.option("-v", "--verbose", count=True, help="More logging, for any command (as each command's -v).")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    envvar="BATCHRUNNER_LOG_FORMAT",
    help="text or json, for any command (as each command's --log-format).",
)
def main(db: str | None, verbose: int, log_format: LogFormat | None) -> None:
    """Run large batches of LLM API calls reliably: resumable, rate-limited, never paying twice.

    \b
    batchrunner submit jobs.jsonl          validate a manifest and queue its jobs
    batchrunner status                     counts, tokens, cost, errors
    batchrunner export --format csv -o results.csv
    """
    configure(log_format or "text")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--run",
    "run_name",
    metavar="NAME",
    help="The run to queue the jobs in [default: FILE's name without its extension: jobs for jobs.jsonl].",
)
@click.option(
    "--provider", help="Provider for lines that name none (openai, anthropic, fake, gemini, cohere)."
)
@click.option("--model", help="Model for simple lines that name none.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Queue the valid lines; write the invalid ones to FILE.rejects.jsonl.",
)
@db_option
@config_option
@verbose_option
@log_format_option
def submit(
    file: str,
    run_name: str | None,
    provider: str | None,
    model: str | None,
    skip_invalid: bool,
    db: str | None,
    config_path: Path | None,
    verbose: bool,
) -> None:
    """Validate the JSONL manifest FILE and queue its jobs (a run named after the file by default).

    Every line is checked first; if any is invalid, each is reported as FILE:LINE: field: reason and
    nothing is queued (exit 2). Submitting the same file again adds nothing.
    """
    from batchrunner import api
    from batchrunner.api.estimating import estimate_of
    from batchrunner.cli.estimate import one_line
    from batchrunner.policy.estimate import JobTally

    settings = resolve_settings({"db": db, "provider": provider, "model": model}, config_path, verbose)
    tally = JobTally()
    report = run_verb(
        api.submit(file, settings=settings, run=run_name, skip_invalid=skip_invalid, tally=tally),
        verbose,
    )
    say(
        f"run {report.run!r}: {report.inserted} job(s) queued, {report.already_present} already present"
        + (" (nothing new)" if report.inserted == 0 and report.already_present else ""),
        event="submitted",
        run=report.run,
        count=report.inserted,
    )
    if report.rejected:
        say(f"warning: {report.rejected} invalid line(s) skipped; see {report.rejects_file}")
    if report.inserted:
        say(
            f"{one_line(estimate_of(tally, settings))}; details: batchrunner estimate {shlex.quote(file)}",
            event="estimate",
        )


@main.command()
@run_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON (stable keys) on stdout.")
@db_option
@config_option
@verbose_option
@log_format_option
def status(
    run_name: str | None, as_json: bool, db: str | None, config_path: Path | None, verbose: bool
) -> None:
    """Show a run's jobs by state, attempts, tokens, cost, activity and top errors."""
    from batchrunner import api

    stats = run_verb(api.status(settings=_settings(db, config_path, verbose), run=run_name), verbose)
    click.echo(status_json(stats) if as_json else render_status(stats))


@main.command()
@db_option
@config_option
@verbose_option
@log_format_option
def runs(db: str | None, config_path: Path | None, verbose: bool) -> None:
    """List the runs in the database."""
    from batchrunner import api

    click.echo(render_runs(run_verb(api.runs(settings=_settings(db, config_path, verbose)), verbose)))


@main.command()
@run_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "openai-batch"]),
    default="csv",
    show_default=True,
    help="csv: one row per job; jsonl: request, response, usage and error per job; openai-batch: "
    "the OpenAI Batch API output format.",
)
@click.option("-o", "--output", default="-", show_default=True, help="Output file, or - for stdout.")
@click.option(
    "--only",
    type=click.Choice(["all", "succeeded", "failed"]),
    default="all",
    show_default=True,
    help="Which jobs to export.",
)
@click.option("--no-sanitize", is_flag=True, help="Keep CSV cells that start with = + - @ as they are.")
@db_option
@config_option
@verbose_option
@log_format_option
def export(
    run_name: str | None,
    fmt: api.ExportFormat,
    output: str,
    only: api.Only,
    no_sanitize: bool,
    db: str | None,
    config_path: Path | None,
    verbose: bool,
) -> None:
    """Export a run's results in manifest order (written to a temp file and renamed into place)."""
    from batchrunner import api

    count = run_verb(
        api.export(
            settings=_settings(db, config_path, verbose),
            run=run_name,
            format=fmt,
            output=output,
            only=only,
            sanitize=not no_sanitize,
        ),
        verbose,
    )
    if output != "-":
        say(f"exported {count} row(s) to {output}")


@main.command()
@click.option("--failed", is_flag=True, required=True, help="Requeue the failed jobs (required).")
@run_option
@db_option
@config_option
@verbose_option
@log_format_option
def retry(
    failed: bool, run_name: str | None, db: str | None, config_path: Path | None, verbose: bool
) -> None:
    """Give a run's failed jobs another go (then: batchrunner run)."""
    from batchrunner import api

    count = run_verb(api.retry_failed(settings=_settings(db, config_path, verbose), run=run_name), verbose)
    say(f"{count} failed job(s) requeued")


@main.command()
@run_option
@db_option
@config_option
@verbose_option
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the cancelled provider batches to end (a later run records the rest).",
)
def cancel(
    run_name: str | None, db: str | None, config_path: Path | None, verbose: bool, wait_s: float
) -> None:
    """Cancel a run's pending and running jobs, and its live provider batches (waiting for them to end:
    the lines they answered are recorded, the rest cancelled)."""
    from batchrunner import api

    settings = _settings(db, config_path, verbose)
    report = run_verb(api.cancel(settings=settings, run=run_name, wait_s=wait_s), verbose)
    if report.batches_cancelled:
        say(
            f"{report.batches_cancelled} provider batch(es) cancelled; recorded what they had answered: "
            f"{report.batch_succeeded} succeeded, {report.batch_failed} failed"
        )
    if report.batches_dropped:
        say(f"{report.batches_dropped} provider batch(es) not sent yet dropped")
    say(f"{report.cancelled} job(s) cancelled")
    if report.batches_still_cancelling:
        say(
            f"{report.batches_still_cancelling} provider batches are still cancelling; "
            "`batchrunner run` records them"
        )


def _settings(db: str | None, config_path: Path | None, verbose: bool) -> Settings:
    """The settings, with the database of ``--db`` / ``BATCHRUNNER_DB``, else the config file's, else
    the default."""
    return resolve_settings({"db": db}, config_path, verbose)


def _register_commands() -> None:
    from batchrunner.cli.attempts import attempts
    from batchrunner.cli.dashboard import dashboard
    from batchrunner.cli.estimate import estimate
    from batchrunner.cli.run import run
    from batchrunner.fakeserver.command import fake_server

    main.add_command(attempts)
    main.add_command(dashboard)
    main.add_command(estimate)
    main.add_command(run)
    main.add_command(fake_server)


_register_commands()
