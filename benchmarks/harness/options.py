"""The command-line options every ``bench_run_*`` script takes."""

from __future__ import annotations

import argparse


def make_parser(doc: str | None, *, reps: int) -> argparse.ArgumentParser:
    """A parser with the script's docstring as its help and the common options."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(parser, reps=reps)
    return parser


def common_args(parser: argparse.ArgumentParser, *, reps: int) -> None:
    parser.add_argument("--quick", action="store_true", help="a small smoke run (1 repetition, fewer jobs)")
    parser.add_argument("--reps", type=int, default=reps, help=f"repetitions [default: {reps}]")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="one extra py-spy run of each client")
    parser.add_argument("--label", default="", help="appended to the name of the saved results file")
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also run batchrunner under `python -m harness.launcher ARGS` once per repetition "
        "(e.g. 'nojitter=--pause-jitter 0'; see benchmarks/harness/launcher.py)",
    )
