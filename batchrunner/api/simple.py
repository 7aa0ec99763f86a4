"""The short forms ``batchrunner`` exports: ``run`` / ``arun`` and ``results`` / ``aresults``.

They take run options as keywords (``provider="fake"``, ``db="jobs.db"``, ``concurrency=8``...) and
resolve the rest as the CLI does (:func:`batchrunner.api.settings`), or take ``settings`` whole. The
verbs of :mod:`batchrunner.api` are the long forms (every verb, ``Settings`` only, async).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from batchrunner.api import reading, running
from batchrunner.api.session import settings as settings_of
from batchrunner.api.submitting import JobsSource
from batchrunner.config import Settings
from batchrunner.engine.options import RunReport
from batchrunner.errors import UsageError
from batchrunner.store.reports import Only


def run(
    jobs: JobsSource | None = None,
    *,
    run: str | None = None,
    settings: Settings | None = None,
    skip_invalid: bool = False,
    **options: Any,
) -> RunReport:
    """Submit ``jobs`` (a JSONL file's path, or job dicts shaped like its lines) and drain their run;
    without ``jobs``, drain the latest run (or ``run``). Blocks until the run ends; see :func:`arun`."""
    return asyncio.run(arun(jobs, run=run, settings=settings, skip_invalid=skip_invalid, **options))


async def arun(
    jobs: JobsSource | None = None,
    *,
    run: str | None = None,
    settings: Settings | None = None,
    skip_invalid: bool = False,
    **options: Any,
) -> RunReport:
    """:func:`run` in a running event loop.

    ``options`` are run options as for :func:`batchrunner.api.settings` (``provider``, ``model``,
    ``db``, ``concurrency``, ``max_attempts``, ``timeout_s``, ``max_cost_usd``, ``rpm``, ``tpm``,
    ``base_url``); give them or ``settings``, not both. Job dicts need ``run``: running the same name
    again resumes it, and jobs already answered are not sent again. Errors are
    :class:`batchrunner.BatchrunnerError` s; ``RunReport.exit_code`` is what the CLI would exit with.
    """
    resolved = _settings(settings, options)
    return await running.run(jobs, settings=resolved, run=run, skip_invalid=skip_invalid)


def results(
    run: str | None = None, *, settings: Settings | None = None, only: Only = "all", **options: Any
) -> Iterator[dict[str, Any]]:
    """The jobs of ``run`` (default: the latest) with their results, in manifest order, as the records
    of the JSONL export; nothing is written to a file. Not for use inside a running event loop (use
    :func:`aresults` there)."""
    pages = aresults(run, settings=settings, only=only, **options)
    with asyncio.Runner() as loop:
        try:
            while True:
                try:
                    yield loop.run(anext(pages))
                except StopAsyncIteration:
                    return
        finally:
            loop.run(pages.aclose())


def aresults(
    run: str | None = None, *, settings: Settings | None = None, only: Only = "all", **options: Any
) -> AsyncGenerator[dict[str, Any]]:
    """:func:`results` as an async iterator."""
    return reading.results(settings=_settings(settings, options), run=run, only=only)


def _settings(settings: Settings | None, options: dict[str, Any]) -> Settings:
    if settings is not None and options:
        raise UsageError(f"give settings or run options ({', '.join(sorted(options))}), not both")
    return settings if settings is not None else settings_of(**options)
