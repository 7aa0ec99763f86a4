"""``run``: drain a run (submitting its jobs first if given); the one place the engine's parts are wired."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, TextIO

from batchrunner.api.batching import BatchMode, drive_batches
from batchrunner.api.session import open_store, resolved
from batchrunner.api.submitting import JobsSource, run_name_of, submit_into
from batchrunner.config import Settings, runsettings
from batchrunner.config.runsettings import Notify
from batchrunner.engine.crashpoints import from_spec
from batchrunner.engine.options import EngineOptions, RunReport, Wiring
from batchrunner.engine.progress import Progress
from batchrunner.engine.runner import Runner
from batchrunner.models import RunInfo
from batchrunner.policy.retry import RetryPolicy
from batchrunner.providers.registry import build_provider
from batchrunner.store.database import remove_sqlite_file, sqlite_file_to_create
from batchrunner.store.store import Store

Tune = Callable[[EngineOptions, Wiring], tuple[EngineOptions, Wiring]]
"""Changes the engine's options and parts before a run starts (experiments, benchmarks)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProgressOptions:
    """Where and how ``run`` reports progress."""

    stream: TextIO
    live: bool
    """Redraw one line (a terminal) instead of printing a summary line every ``interval_s``."""
    interval_s: float = 10.0


async def run(
    jobs: JobsSource | None = None,
    *,
    settings: Settings | None = None,
    run: str | None = None,
    skip_invalid: bool = False,
    progress: ProgressOptions | None = None,
    handle_signals: bool = False,
    notify: Notify = lambda _message: None,
    crash_at: str | None = None,
    tune: Tune | None = None,
    mode: Literal["realtime", "batch"] = "realtime",
    batch: BatchMode | None = None,
) -> RunReport:
    """Drain a run (the latest, or ``run``); with ``jobs`` (a file or mappings), submit them first
    (idempotently: what is already queued is not queued again, what is answered is not sent again).

    The run is run with the settings it remembers (docs/design.md "What a run remembers"), but for the
    options that ``settings.given`` names; ``notify`` is told of every such difference, and of pending
    jobs rerouted by a given ``provider``. A file is submitted the way it was before (``skip_invalid``
    included). ``handle_signals``: Ctrl-C and SIGTERM stop the run gracefully (the CLI's behaviour).
    ``crash_at`` names a test-only crash point (:mod:`batchrunner.engine.crashpoints`). ``mode="batch"``
    sends the jobs of providers with a batch API as provider batches (``batch`` says how; docs/batch.md);
    a run with provider batches still live waits for them in either mode. Returns how the run ended;
    ``RunReport.exit_code`` is the CLI's exit code.
    """
    settings = resolved(settings)
    new_file = sqlite_file_to_create(settings.run.db) if jobs is not None else None
    submitted = False
    try:
        async with open_store(settings.run.db, create=jobs is not None) as store:
            found = await _the_run(store, settings, jobs, run, skip_invalid, notify)
            submitted = True
            settings = await _settings_of(store, found, settings, notify)
            options, wiring = _engine(settings, crash_at)
            wiring.progress = await _progress(store, found, progress)
            if tune is not None:
                options, wiring = tune(options, wiring)
            if mode == "batch" or await store.batches_of(found.id, live_only=True):
                report = await drive_batches(
                    store,
                    found,
                    settings,
                    (options, wiring),
                    batch or BatchMode(),
                    forming=mode == "batch",
                    handle_signals=handle_signals,
                    notify=notify,
                )
            else:
                report = await Runner(store, found, options, wiring).run(handle_signals=handle_signals)
            return replace(report, db=settings.run.db, runs_in_db=await store.run_count())
    except BaseException:
        if new_file is not None and not submitted:  # nothing was queued: leave no empty database behind
            remove_sqlite_file(new_file)
        raise


def _engine(settings: Settings, crash_at: str | None) -> tuple[EngineOptions, Wiring]:
    """The engine's options, policies and parts, from the settings."""
    options = EngineOptions(
        concurrency=settings.run.concurrency,
        retry=RetryPolicy(max_attempts=settings.run.max_attempts),
        timeout_s=settings.run.timeout_s,
        max_cost_usd=settings.run.max_cost_usd,
        stop_on_systematic=not settings.run.no_stop_on_systematic,
    )
    wiring = Wiring(
        provider_for=lambda name: build_provider(name, settings.provider_settings(name)),
        limits_for=settings.rate_limits,
        prices=settings.prices,
        crash_point=from_spec(crash_at),
    )
    return options, wiring


async def _the_run(
    store: Store,
    settings: Settings,
    jobs: JobsSource | None,
    name: str | None,
    skip_invalid: bool,
    notify: Notify,
) -> RunInfo:
    """The run to drain, submitting ``jobs`` first; a given provider reroutes an existing run's jobs."""
    before = None
    if jobs is not None:
        name = run_name_of(jobs, name)
        before = await store.find_run_or_none(name)
        was_skipping = bool(before is not None and before.options.get("skip_invalid"))
        as_before = settings if before is None else _as_submitted(settings, before)
        report = await submit_into(
            store, as_before, jobs, run=name, skip_invalid=skip_invalid or was_skipping
        )
        if report.rejected:
            where = f"; see {report.rejects_file}" if report.rejects_file else ""
            notify(f"{report.rejected} invalid line(s) skipped{where}")
    found = await store.find_run(name)
    if jobs is None:  # (a submit makes its run the latest itself)
        await store.touch_run(found.id)
    provider = settings.run.provider
    if provider is not None and "provider" in settings.given and (jobs is None or before is not None):
        moved = await store.reroute_pending(found.id, provider)
        if moved:
            notify(f"rerouted {moved} pending job(s) of run {found.name!r} to provider {provider}")
    return found


def _as_submitted(settings: Settings, before: RunInfo) -> Settings:
    """The settings to submit a run's file again with: its provider as it was submitted (the provider is
    part of each job's content), so that the file adds nothing new; a given ``--provider`` then reroutes
    the run's pending jobs instead of conflicting with them."""
    return replace(settings, run=replace(settings.run, provider=before.options.get("provider")))


async def _settings_of(store: Store, run: RunInfo, settings: Settings, notify: Notify) -> Settings:
    """The settings the run remembers, with this invocation's given options; remembered if new."""
    providers = await store.providers_left(run.id)
    if run.settings is not None:
        settings = runsettings.apply(run.settings, settings, notify)
    remembered = runsettings.snapshot(settings, providers, run.settings)
    if remembered != run.settings:
        await store.save_run_settings(run.id, remembered)
    return settings


async def _progress(store: Store, run: RunInfo, options: ProgressOptions | None) -> Progress | None:
    if options is None:
        return None
    before = await store.stats(run)  # a few rows: the run's counters (docs/status-counters.md)
    counts = before.by_state
    done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    interval = 0.5 if options.live else options.interval_s
    return Progress(
        total=before.total,
        done_before=done,
        before=before,
        stream=options.stream,
        live=options.live,
        interval_s=interval,
    )
