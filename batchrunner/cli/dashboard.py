"""``batchrunner dashboard``: serve the live dashboard of a run until Ctrl-C."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from batchrunner.cli.render import status_json

if TYPE_CHECKING:
    from batchrunner.api import StatusReport


def status_fields(report: StatusReport) -> Mapping[str, Any]:
    """The fields of ``status --json``, for the dashboard's snapshots (the same renderer, so the same
    fields)."""
    fields: dict[str, Any] = json.loads(status_json(report))
    return fields


def announce(url: str) -> None:
    click.echo(url)  # the first line of stdout, flushed: a script or a test reads it to connect
    click.echo("serving the dashboard read-only; Ctrl-C stops it", err=True)


@click.command("dashboard")
@run_option
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to serve on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="The port (0: a free one)."
)
@click.option(
    "--token",
    envvar="BATCHRUNNER_DASHBOARD_TOKEN",
    show_envvar=True,
    help="Every request must carry ?token=TOKEN (the printed URL does); required with a --host other "
    "than the loopback.",
)
@click.option("--show-content", is_flag=True, help="Show the latest answers too (hidden by default).")
@db_option
@config_option
@verbose_option
@log_format_option
def dashboard(
    run_name: str | None,
    host: str,
    port: int,
    token: str | None,
    show_content: bool,
    db: str | None,
    config_path: Path | None,
    verbose: bool,
) -> None:
    """A live web page of a run: counts, throughput, latency, errors, runners, pauses, batches.

    It reads the database only, so it can watch runs that any number of runners drive, started before
    or after it. The first line of stdout is its URL.

    \b
    batchrunner dashboard                 open http://127.0.0.1:8765/
    batchrunner dashboard --port 0        on a free port
    batchrunner dashboard --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    from batchrunner.dashboard.server import serve_dashboard

    settings = resolve_settings({"db": db}, config_path, verbose)
    serving = serve_dashboard(
        settings,
        announce=announce,
        run=run_name,
        host=host,
        port=port,
        token=token,
        show_content=show_content,
        status_fields=status_fields,
    )
    run_verb(serving, verbose)
