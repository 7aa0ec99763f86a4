"""What-if runs: ``batchrunner run`` with one engine behaviour changed, to measure what a proposed change
would gain, without editing or patching the package (benchmarks only).

    python -m harness.launcher [--pause-jitter S] [--no-halving] [--guard S] [--storm K/N]
        [--no-provider-pause] [--retry-base S] [--retry-factor F] [--trace-store FILE]
        -- run [FILE] --db DB [--base-url URL] [--concurrency N] [--rpm R] [--no-progress]

The part after ``--`` is the ``batchrunner run`` command line the benchmarks use (only those flags). It
is run through :func:`batchrunner.api.run`, as the CLI runs it (settings resolved the same way:
defaults < config < environment < these flags; Ctrl-C and SIGTERM handled; progress on stderr unless
``--no-progress``), with a ``tune`` that changes the engine's options and parts before the run starts:

- ``--retry-base``/``--retry-factor``: ``options.retry`` replaced (``RetryPolicy.base_delay``/``factor``);
- ``--pause-jitter``/``--no-halving``/``--guard``/``--storm``: ``wiring.limits_for`` wrapped, changing the
  provider's ``RateLimits`` (``pause_jitter_s``; ``min_concurrency = max_concurrency``; ``guard_s``;
  ``storm_count``/``storm_window``);
- ``--no-provider-pause``: ``wiring.limiter`` builds a :class:`NoPauseLimiter` (a 429 delays only its own
  job, through the retry policy's Retry-After floor);
- ``--trace-store``: :mod:`harness.storetrace` (SQLAlchemy events, nothing of batchrunner's wrapped).

It prints the CLI's summary lines (``batchrunner.cli.run.summary_lines``) and exits with the run's exit
code (``RunReport.exit_code``); errors cross the CLI's own error boundary. Compared with ``python -m
batchrunner run`` it skips click's parsing of the command line only (the modules it imports are the same).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrunner.api import RunReport
    from batchrunner.config import Settings
    from batchrunner.engine.options import EngineOptions, Wiring
    from batchrunner.policy.ratelimit import ProviderLimiter, RateLimits


def what_if_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.launcher")
    parser.add_argument("--pause-jitter", type=float, help="RateLimits.pause_jitter_s (default 1.0)")
    parser.add_argument("--no-halving", action="store_true", help="min_concurrency = max_concurrency")
    parser.add_argument("--guard", type=float, help="RateLimits.guard_s (default 0.025)")
    parser.add_argument(
        "--storm",
        metavar="K/N",
        help="RateLimits.storm_count/storm_window: pause and halve when K of the last N answers were 429s",
    )
    parser.add_argument("--retry-base", type=float, help="RetryPolicy.base_delay")
    parser.add_argument("--retry-factor", type=float, help="RetryPolicy.factor")
    parser.add_argument(
        "--trace-store", metavar="FILE", help="append every database transaction's start and time to FILE"
    )
    parser.add_argument(
        "--no-provider-pause", action="store_true", help="a 429 delays only its own job (retry policy)"
    )
    return parser


def run_parser() -> argparse.ArgumentParser:
    """The ``batchrunner run`` flags the benchmarks pass (after ``--``)."""
    parser = argparse.ArgumentParser(prog="python -m harness.launcher ... --")
    parser.add_argument("verb", choices=["run"])
    parser.add_argument("file", nargs="?")
    parser.add_argument("--db", required=True)
    parser.add_argument("--base-url")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--rpm", type=float)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def limits_changes(opts: argparse.Namespace, max_concurrency: int) -> dict[str, Any]:
    """The ``RateLimits`` fields the what-if flags change."""
    changes: dict[str, Any] = {}
    if opts.pause_jitter is not None:
        changes["pause_jitter_s"] = opts.pause_jitter
    if opts.no_halving:
        changes["min_concurrency"] = max_concurrency
    if opts.guard is not None:
        changes["guard_s"] = opts.guard
    if opts.storm:
        changes["storm_count"], changes["storm_window"] = (int(part) for part in opts.storm.split("/"))
    return changes


def no_pause_limiter(limits: RateLimits, name: str) -> ProviderLimiter:
    """The provider limiter of ``--no-provider-pause``: a 429 never pauses the provider."""
    from batchrunner.policy.ratelimit import ProviderLimiter

    class NoPauseLimiter(ProviderLimiter):
        def on_rate_limited(self, slot: Any, *, retry_after: float | None = None) -> float | None:
            return None  # only the job's own retry waits (Retry-After is its floor)

    return NoPauseLimiter(limits, name=name)


def tuner(opts: argparse.Namespace) -> Callable[[EngineOptions, Wiring], tuple[EngineOptions, Wiring]]:
    """The ``tune`` of :func:`batchrunner.api.run` for the what-if flags."""
    retry = {"base_delay": opts.retry_base, "factor": opts.retry_factor}
    retry = {name: value for name, value in retry.items() if value is not None}

    def tune(options: EngineOptions, wiring: Wiring) -> tuple[EngineOptions, Wiring]:
        if retry:
            options = dataclasses.replace(options, retry=dataclasses.replace(options.retry, **retry))
        configured = wiring.limits_for

        def limits_for(name: str) -> RateLimits:
            limits = configured(name)
            return dataclasses.replace(limits, **limits_changes(opts, limits.max_concurrency))

        wiring.limits_for = limits_for
        if opts.no_provider_pause:
            wiring.limiter = no_pause_limiter
        return options, wiring

    return tune


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings ``batchrunner run`` resolves from these flags (``None``: not given)."""
    from batchrunner import api

    flags = {"db": args.db, "base_url": args.base_url, "concurrency": args.concurrency, "rpm": args.rpm}
    return api.settings(**flags)


def run(opts: argparse.Namespace, args: argparse.Namespace) -> RunReport:
    """``api.run`` as the CLI calls it, inside the CLI's error boundary (its messages and exit codes)."""
    from batchrunner import api
    from batchrunner.cli.common import error_boundary, run_verb

    with error_boundary(False):
        settings = settings_of(args)
    progress = None
    if not args.no_progress:
        progress = api.ProgressOptions(stream=sys.stderr, live=sys.stderr.isatty())
    job = api.run(
        args.file,
        settings=settings,
        progress=progress,
        handle_signals=True,
        notify=lambda message: print(message, file=sys.stderr),
        tune=tuner(opts),
    )
    return run_verb(job, False)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    opts = what_if_parser().parse_args(argv[:split])
    args = run_parser().parse_args(argv[split + 1 :])
    from batchrunner import api  # noqa: F401  (imported before the trace's first mark)
    from batchrunner.cli.run import summary_lines

    if opts.trace_store:
        from harness import storetrace

        storetrace.start(Path(opts.trace_store)).write("imported", time.time())
    # as the CLI's group and `run` command set logging up
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("batchrunner").setLevel(logging.WARNING)
    report = run(opts, args)
    for line in summary_lines(report, quiet=False):
        print(line, file=sys.stderr)
    sys.exit(report.exit_code)


if __name__ == "__main__":
    main()
