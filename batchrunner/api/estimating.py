"""``estimate``: what a manifest or a run's queued jobs would cost and take, before anything is sent.

The figures are :mod:`batchrunner.policy.estimate`'s (docs/estimate.md); this verb reads the jobs (a file,
validated as ``submit`` validates it but queued nowhere, or a run's pending jobs page by page) and the
run's answers so far, and hands them in with each provider's limits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from batchrunner.api.session import open_store, resolved
from batchrunner.api.submitting import ITEMS_LABEL, JobsSource, manifest_items, manifest_options
from batchrunner.config import Settings
from batchrunner.errors import ManifestError, ManifestIssue, UsageError
from batchrunner.models import JobSpec
from batchrunner.policy.estimate import Answered, Estimate, JobTally, Mode, Pace, build_estimate

__all__ = ["estimate", "estimate_of", "paces_for"]


async def estimate(
    jobs: JobsSource | None = None,
    *,
    settings: Settings | None = None,
    run: str | None = None,
    mode: Mode = "realtime",
) -> Estimate:
    """The estimate of ``jobs`` (a manifest or job mappings; nothing is queued), else of the pending jobs
    of ``run`` (default: the only or latest run) with its answers so far for the expected output.

    Invalid lines are a :class:`ManifestError`, as for ``submit``: an estimate of part of a file would
    mislead.
    """
    settings = resolved(settings)
    if jobs is not None:
        return estimate_of(tally_jobs(jobs, settings), settings, mode=mode)
    async with open_store(settings.run.db, create=False) as store:
        info = await store.find_run(run)
        tally = JobTally()
        async for page in store.queued_requests(info):
            for _, provider, model, endpoint, request_json in page:
                tally.add(provider, model, endpoint, json.loads(request_json))
        answered = await store.answered_by_model(info)
    return estimate_of(tally, settings, answered=answered, mode=mode)


def estimate_of(
    tally: JobTally,
    settings: Settings,
    *,
    answered: dict[tuple[str, str | None], Answered] | None = None,
    mode: Mode = "realtime",
) -> Estimate:
    """The estimate of counted jobs under ``settings``' prices and limits."""
    providers = {provider for provider, _ in tally.counts}
    return build_estimate(
        tally, prices=settings.prices, paces=paces_for(settings, providers), answered=answered, mode=mode
    )


def paces_for(settings: Settings, providers: Iterable[str]) -> dict[str, Pace]:
    """Each provider's configured limits and concurrency (no key needed, nothing is built)."""
    paces = {}
    for name in providers:
        entry = settings.provider_config(name)
        limits = settings.rate_limits(name)
        latency = (entry.fake_latency_ms or 0.0) if entry.kind == "fake" else None
        paces[name] = Pace(
            rpm=limits.rpm,
            tpm=limits.tpm,
            concurrency=limits.max_concurrency,
            latency_ms=latency,
            batch_api=entry.batch_api,
        )
    return paces


def tally_jobs(jobs: JobsSource, settings: Settings) -> JobTally:
    """Count a manifest's (or job mappings') jobs; any invalid line is a :class:`ManifestError`."""
    options = manifest_options(settings)
    source = Path(jobs) if isinstance(jobs, str | os.PathLike) else None
    items = manifest_items(jobs, source, options)
    tally = JobTally()
    shown: list[ManifestIssue] = []
    invalid = 0
    for item in items:
        if isinstance(item, JobSpec):
            tally.add_counted(item.provider, item.model, item.prompt_tokens, item.output_tokens)
            continue
        invalid += 1
        shown.extend(item[: max(0, 20 - len(shown))])
    if invalid:
        raise ManifestError(shown, invalid)
    if not tally.jobs:
        raise UsageError(f"{source if source is not None else ITEMS_LABEL}: no jobs")
    return tally
