"""batchrunner: run large batches of LLM API calls reliably, fast and cheaply.

Every job is answered once, within the provider's rate limits, with retries, and checkpointed, so an
interrupted run resumes where it stopped. From Python::

    import batchrunner

    jobs = [{"id": f"q{n}", "prompt": f"What is {n} + {n}?"} for n in range(100)]
    report = batchrunner.run(jobs, run="sums", provider="fake", db="sums.db")
    for result in batchrunner.results("sums", db="sums.db"):
        print(result["custom_id"], result["status"], result["output"])

- :func:`run` / :func:`arun` submit jobs (a JSONL file's path, or dicts shaped like its lines) and
  drain their run; running the same run again resumes it. Run options are keywords (``provider``,
  ``model``, ``db``, ``concurrency``, ``max_attempts``, ``timeout_s``, ``max_cost_usd``, ``rpm``,
  ``tpm``, ``base_url``); everything else comes from the environment, ``.env`` and the config file, as
  on the command line (API keys too: ``OPENAI_API_KEY``...).
- :func:`results` / :func:`aresults` iterate a run's jobs and results in manifest order.
- :mod:`batchrunner.api` has every verb (submit, run, status, runs, export, results, retry_failed,
  cancel) as a coroutine taking :class:`Settings`, which :func:`settings` resolves.
- Errors derive from :class:`BatchrunnerError` (the tree is drawn in :mod:`batchrunner.errors`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str
    from batchrunner import api
    from batchrunner.api import RunReport, StatusReport, settings
    from batchrunner.api.simple import aresults, arun, results, run
    from batchrunner.config import Settings
    from batchrunner.errors import (
        BatchrunnerError,
        ConfigError,
        ConflictError,
        ExportError,
        ManifestError,
        ManifestIssue,
        ProviderError,
        StoreError,
        UsageError,
    )
    from batchrunner.models import JobSpec, JobState, RunStats, SubmitReport


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batchrunner")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0"


_HOMES = {
    "api": "batchrunner.api",
    **dict.fromkeys(["RunReport", "StatusReport", "settings"], "batchrunner.api"),
    **dict.fromkeys(["aresults", "arun", "results", "run"], "batchrunner.api.simple"),
    "Settings": "batchrunner.config",
    **dict.fromkeys(
        [
            "BatchrunnerError",
            "ConfigError",
            "ConflictError",
            "ExportError",
            "ManifestError",
            "ManifestIssue",
            "ProviderError",
            "StoreError",
            "UsageError",
        ],
        "batchrunner.errors",
    ),
    **dict.fromkeys(["JobSpec", "JobState", "RunStats", "SubmitReport"], "batchrunner.models"),
}
"""Where each public name lives. They are imported on first use, so that ``import batchrunner.X`` of
one part (the fake server, the manifest reader) does not import the engine, the store and the SDKs
(0.4 s against 1.1 s for ``import batchrunner.fakeserver``, measured)."""


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata costs 60 ms: only for who asks (measured)
        globals()[name] = _version()
        return globals()[name]
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchrunner' has no attribute {name!r}")
    module = importlib.import_module(home)
    value = module if name == "api" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BatchrunnerError", "ConfigError", "ConflictError", "ExportError", "JobSpec", "JobState",
    "ManifestError", "ManifestIssue", "ProviderError", "RunReport", "RunStats", "Settings",
    "StatusReport", "StoreError", "SubmitReport", "UsageError", "__version__", "api", "aresults",
    "arun", "results", "run", "settings",
]  # fmt: skip
