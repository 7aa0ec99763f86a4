"""What every command shares: the error boundary and exit codes, settings resolution, common options."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from batchrunner.cli.logs import LOG_FORMATS, configure, keep_secret, say
from batchrunner.errors import (
    BatchrunnerError,
    ConfigError,
    ConflictError,
    ManifestError,
    RunStoppingError,
    UsageError,
)

if TYPE_CHECKING:
    from batchrunner.config import Settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


def exit_code_for(error: BatchrunnerError) -> int:
    """docs/design.md "Exit codes": 2 bad usage or input, 3 auth/config errors, 4 the machine failed us."""
    if isinstance(error, RunStoppingError | ConfigError):
        return EXIT_STOPPED
    if isinstance(error, UsageError | ManifestError | ConflictError):
        return EXIT_USAGE
    return EXIT_ENVIRONMENT


@contextmanager
def error_boundary(verbose: bool) -> Iterator[None]:
    """The one place errors become a one-line reason on stderr and an exit code (tracebacks with -v)."""
    try:
        yield
    except BatchrunnerError as exc:
        if verbose:
            logging.getLogger("batchrunner").exception("failed")
        _fail(f"error: {exc}", exit_code_for(exc))
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)


def _fail(message: str, code: int) -> NoReturn:
    say(message, event="error", level=logging.ERROR, status=code)
    sys.exit(code)


def run_verb(coro: Coroutine[Any, Any, T], verbose: bool) -> T:
    """Run a library verb inside the error boundary."""
    with error_boundary(verbose):
        return asyncio.run(coro)
    raise AssertionError("unreachable")  # pragma: no cover - the boundary exits


def resolve_settings(flags: Mapping[str, object | None], config_path: Path | None, verbose: bool) -> Settings:
    """Defaults < config file < environment < flags, resolved once (STYLE habit 19)."""
    from batchrunner.config import load_settings  # pydantic, yaml: only for a command that runs

    with error_boundary(verbose):
        settings = load_settings(flags=flags, env=os.environ, cwd=Path.cwd(), config_path=config_path)
        for entry in settings.providers.values():  # never in a log line, whatever a message says
            if entry.api_key is not None:
                keep_secret(entry.api_key.get_secret_value())
        return settings
    raise AssertionError("unreachable")  # pragma: no cover - the boundary exits


def from_group(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An option given before the subcommand (``batchrunner --db x.db status``) counts as given to it,
    unless the subcommand's own flag says otherwise; both beat the environment."""
    given = ctx.find_root().params.get(param.name or "")
    if not given or ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE:
        return value
    return type(value)(given) if isinstance(value, bool | int) else given


def db_option(func: F) -> F:
    option = click.option(
        "--db",
        callback=from_group,
        envvar="BATCHRUNNER_DB",
        show_envvar=True,
        help="Job database: a SQLite file path, or a SQLAlchemy URL such as postgresql+asyncpg://host/db "
        "[default: the config file's, else batchrunner.db].",
    )
    return option(func)


def config_option(func: F) -> F:
    option = click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar="BATCHRUNNER_CONFIG",
        show_envvar=True,
        help="Config file [default: ./batchrunner.toml or ./batchrunner.yaml, if there is one].",
    )
    return option(func)


def run_option(func: F) -> F:
    option = click.option(
        "--run",
        "run_name",
        metavar="NAME",
        help="The run to act on [default: the latest: the one most recently submitted, run, retried "
        "or cancelled].",
    )
    return option(func)


def log_format_option(func: F) -> F:
    """``--log-format text|json`` (``BATCHRUNNER_LOG_FORMAT``), given to any command or before it."""

    def apply(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        value = from_group(ctx, param, value)
        if value:
            configure(value)
        return value

    option = click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        callback=apply,
        expose_value=False,
        is_eager=True,
        envvar="BATCHRUNNER_LOG_FORMAT",
        show_envvar=True,
        help="How the log and messages on stderr are written: text, or json (one object a line, for log "
        "shippers) [default: text].",
    )
    return option(func)


def verbose_option(func: F) -> F:
    return click.option(
        "-v", "--verbose", is_flag=True, callback=from_group, help="Show tracebacks and debug logs."
    )(func)
