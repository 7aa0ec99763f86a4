"""The library verbs: the CLI is a thin shell over these, and Python programs call them directly.

Every verb takes ``settings`` (:class:`batchrunner.config.Settings`; default: resolved from the
environment, ``.env`` and the config file as the CLI does, see :func:`settings`) and opens the store
once. They are coroutines::

    import asyncio
    from batchrunner import api

    settings = api.settings(provider="fake", db="demo.db")
    report = asyncio.run(api.run("jobs/simple.jsonl", settings=settings))
    print(report.stats.by_state, asyncio.run(api.status(settings=settings)).remaining)

``batchrunner.run`` / ``batchrunner.results`` are the short, blocking forms (:mod:`.simple`). Modules:
``session`` (settings, the store), ``submitting``, ``running`` (where the engine is wired),
``reading`` (status, runs, export, results), ``changing`` (retry, cancel).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrunner.api.batching import BatchMode
    from batchrunner.api.changing import CancelReport, cancel, retry_failed
    from batchrunner.api.estimating import estimate
    from batchrunner.api.reading import StatusReport, attempts, export, results, runs, status
    from batchrunner.api.running import ProgressOptions, Tune, run
    from batchrunner.api.session import DEFAULT_DB, open_store, settings
    from batchrunner.api.submitting import JobsSource, submit
    from batchrunner.engine.options import RunReport
    from batchrunner.export import ExportFormat
    from batchrunner.store.reports import Only

_HOMES = {
    **dict.fromkeys(["CancelReport", "cancel", "retry_failed"], "batchrunner.api.changing"),
    "estimate": "batchrunner.api.estimating",
    "BatchMode": "batchrunner.api.batching",
    **dict.fromkeys(
        ["StatusReport", "attempts", "export", "results", "runs", "status"], "batchrunner.api.reading"
    ),
    **dict.fromkeys(["ProgressOptions", "Tune", "run"], "batchrunner.api.running"),
    **dict.fromkeys(["DEFAULT_DB", "open_store", "settings"], "batchrunner.api.session"),
    **dict.fromkeys(["JobsSource", "submit"], "batchrunner.api.submitting"),
    "RunReport": "batchrunner.engine.options",
    "ExportFormat": "batchrunner.export",
    "Only": "batchrunner.store.reports",
}
"""Where each verb lives; imported on first use, so that ``status`` does not import the engine, the
manifest reader and the providers it does not need."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchrunner.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_DB",
    "BatchMode",
    "CancelReport",
    "ExportFormat",
    "JobsSource",
    "Only",
    "ProgressOptions",
    "RunReport",
    "StatusReport",
    "Tune",
    "attempts",
    "cancel",
    "estimate",
    "export",
    "open_store",
    "results",
    "retry_failed",
    "run",
    "runs",
    "settings",
    "status",
    "submit",
]  # fmt: skip
