"""The ``batchrunner`` command line: click commands only, each a thin shell over a library verb."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="batchrunner")
def main() -> None:
    """Run large batches of LLM API calls reliably: resumable, rate-limited, never paying twice."""
