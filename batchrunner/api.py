"""The library verbs: submit, status, export, retry, cancel, runs. The CLI is a thin shell over these.

Each verb opens the store named by ``db`` (a path or a SQLAlchemy URL), does one thing and closes it::

    import asyncio, batchrunner.api as br
    report = asyncio.run(br.submit("jobs.jsonl", db="batchrunner.db", provider="fake"))
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from batchrunner import manifest
from batchrunner.config import Settings, runsettings
from batchrunner.config.runsettings import Notify
from batchrunner.engine.crashpoints import CrashPoint, never
from batchrunner.engine.liveness import STALE_AFTER_S, pid_alive, runner_alive
from batchrunner.engine.options import EngineOptions, RunReport, Wiring
from batchrunner.engine.progress import Progress
from batchrunner.engine.runner import Runner
from batchrunner.errors import ConflictError, ManifestError, ManifestIssue, UsageError
from batchrunner.export import ExportFormat, ExportOptions, write_export
from batchrunner.models import JobSpec, RunInfo, RunStats, SubmitReport
from batchrunner.policy.retry import RetryPolicy
from batchrunner.providers.registry import build_provider
from batchrunner.store.database import remove_sqlite_file, sqlite_file_to_create
from batchrunner.store.insights import RunInsights
from batchrunner.store.reports import Only
from batchrunner.store.store import Store
from batchrunner.store.submit import JobInserter

__all__ = [
    "DEFAULT_DB", "ExportFormat", "Only", "ProgressOptions", "RunReport", "StatusReport",
    "cancel", "export", "open_store", "retry_failed", "run", "runs", "status", "submit",
]  # fmt: skip

DEFAULT_DB = "batchrunner.db"
INSERT_BATCH = 2000


@asynccontextmanager
async def open_store(db: str, *, create: bool = False) -> AsyncIterator[Store]:
    """The store at ``db``; only ``submit`` (``create=True``) may create a new database."""
    store = await Store.open(db, create=create)
    try:
        yield store
    finally:
        await store.close()


@dataclass
class _RejectTally:
    """Invalid lines seen so far: the first few kept for the message, all written to a rejects file."""

    shown: list[ManifestIssue]
    total: int = 0


async def submit(
    path: str | os.PathLike[str],
    *,
    db: str = DEFAULT_DB,
    run: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    skip_invalid: bool = False,
    known_providers: frozenset[str] | None = None,
) -> SubmitReport:
    """Validate a JSONL manifest and queue its jobs in one transaction: all of them, or none.

    Re-submitting the same file adds nothing; an existing id with different content is a ConflictError.
    With ``skip_invalid`` the valid lines are queued and the invalid ones written, with their reasons, to
    ``FILE.rejects.jsonl``; without it any invalid line is a ManifestError and nothing is inserted. A
    database that this call created is removed again if it fails.
    """
    new_file = sqlite_file_to_create(db)
    try:
        async with open_store(db, create=True) as store:
            return await _submit_into(
                store,
                Path(path),
                run=run,
                provider=provider,
                model=model,
                skip_invalid=skip_invalid,
                known_providers=known_providers,
            )
    except BaseException:
        if new_file is not None:
            remove_sqlite_file(new_file)
        raise


async def _submit_into(
    store: Store,
    source: Path,
    *,
    run: str | None,
    provider: str | None,
    model: str | None,
    skip_invalid: bool,
    known_providers: frozenset[str] | None,
) -> SubmitReport:
    run_name = run or source.stem
    options = manifest.ManifestOptions(
        default_provider=provider,
        default_model=model,
        known_providers=known_providers or manifest.DEFAULT_PROVIDERS,
    )
    rejects = _RejectsFile(source) if skip_invalid else None
    tally = _RejectTally(shown=[])
    submitted = {"provider": provider, "model": model, "skip_invalid": skip_invalid}
    try:
        async with store.bulk_insert(run_name, source=str(source), options=submitted) as inserter:
            lines = await _load(
                manifest.iter_manifest(source, options), inserter, tally, rejects, skip_invalid
            )
            if tally.total and not skip_invalid:
                raise ManifestError(tally.shown, tally.total)
            if inserter.conflicts:
                raise ConflictError(run_name, inserter.conflicting_ids, inserter.conflicts)
            if lines == tally.total and not inserter.already_present:
                raise UsageError(f"{source}: no jobs" + (" (every line is invalid)" if lines else ""))
        rejects_file = rejects.commit() if rejects is not None and tally.total else None
    finally:
        if rejects is not None:
            rejects.discard()
    return SubmitReport(
        run=run_name,
        file=str(source),
        lines=lines,
        inserted=inserter.inserted,
        already_present=inserter.already_present,
        rejected=tally.total,
        rejects_file=rejects_file,
    )


async def _load(
    items: Iterable[JobSpec | list[ManifestIssue]],
    inserter: JobInserter,
    tally: _RejectTally,
    rejects: _RejectsFile | None,
    skip_invalid: bool,
) -> int:
    """Queue valid lines in batches; once a line is invalid (and not skipped) only keep validating."""
    lines = 0
    batch: list[JobSpec] = []
    for item in items:
        lines += 1
        if isinstance(item, JobSpec):
            batch.append(item)
            if len(batch) >= INSERT_BATCH:
                if skip_invalid or not tally.total:
                    await inserter.add(batch)
                batch = []
            continue
        tally.total += 1
        tally.shown.extend(item[: max(0, 20 - len(tally.shown))])
        if rejects is not None:
            rejects.write(item)
    if skip_invalid or not tally.total:
        await inserter.add(batch)
    return lines


class _RejectsFile:
    """``FILE.rejects.jsonl`` (mode 0600): written to a temp file, renamed into place only on success."""

    def __init__(self, source: Path) -> None:
        self.target = source.with_name(source.name + ".rejects.jsonl")
        fd, self.temp_name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.")
        self.out = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, issues: list[ManifestIssue]) -> None:
        record = {
            "file": issues[0].file,
            "line": issues[0].line,
            "errors": [{"field": issue.field, "reason": issue.reason} for issue in issues],
        }
        self.out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def commit(self) -> str:
        self.out.close()
        os.replace(self.temp_name, self.target)
        return str(self.target)

    def discard(self) -> None:
        if not self.out.closed:
            self.out.close()
        if os.path.exists(self.temp_name):
            os.unlink(self.temp_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusReport:
    """``status``: the run's aggregates and what is happening now."""

    stats: RunStats
    insights: RunInsights

    @property
    def remaining(self) -> int:
        states = self.stats.by_state
        return states["pending"] + states["claimed"] + states["running"]

    @property
    def live(self) -> bool:
        """A runner is draining the run now."""
        return any(runner.alive for runner in self.insights.runners)

    @property
    def eta_s(self) -> float | None:
        """Seconds to finish at the recent throughput; None unless a runner is live and finishing jobs."""
        rate = self.insights.throughput_per_s
        return self.remaining / rate if self.live and rate > 0 and self.remaining else None

    @property
    def projected_cost_usd(self) -> float | None:
        """Cost so far, scaled from the priced results to every job (None: nothing priced yet, or a
        model without a price: then the cost is unknown)."""
        priced = self.stats.priced_results
        if not priced or not self.stats.cost_known:
            return None
        return self.stats.cost_usd / priced * (self.stats.total - self.stats.by_state["cancelled"])


async def status(*, db: str = DEFAULT_DB, run: str | None = None) -> StatusReport:
    """Counts, attempts, tokens, cost, throughput, ETA and errors of a run (the latest by default)."""
    async with open_store(db) as store:
        found = await store.find_run(run)
        stats, insights = await store.stats(found), await store.insights(found)
    now = datetime.now(UTC)
    runners = [
        replace(r, alive=runner_alive(host=r.host, pid=r.pid, heartbeat_at=r.heartbeat_at, now=now))
        for r in insights.runners
    ]
    return StatusReport(stats=stats, insights=replace(insights, runners=runners))


async def runs(*, db: str = DEFAULT_DB) -> list[RunInfo]:
    """Every run in the database, oldest first, with its job count."""
    async with open_store(db) as store:
        return await store.list_runs()


async def export(
    *,
    db: str = DEFAULT_DB,
    run: str | None = None,
    format: ExportFormat = "csv",
    output: str = "-",
    only: Only = "all",
    sanitize: bool = True,
) -> int:
    """Stream a run's results to ``output`` (a path or ``-``) in manifest order; return the row count."""
    async with open_store(db) as store:
        found = await store.find_run(run)
        keys = tuple(await store.metadata_keys(found)) if format == "csv" else ()
        run_key = f"{found.id}:{found.created_at.isoformat()}"
        options = ExportOptions(format=format, sanitize=sanitize, metadata_keys=keys, run_key=run_key)
        pages = store.export_pages(found, only, last_attempt=format == "openai-batch")
        return await write_export(pages, output, options)


async def retry_failed(*, db: str = DEFAULT_DB, run: str | None = None) -> int:
    """Put a run's failed jobs back in the queue with fresh attempts; return how many."""
    async with open_store(db) as store:
        return await store.retry_failed((await store.find_run(run)).id)


async def cancel(*, db: str = DEFAULT_DB, run: str | None = None) -> int:
    """Cancel a run: its pending jobs now, the jobs a live runner holds as it stops (within a second;
    answers in flight are recorded); return how many were cancelled now."""
    async with open_store(db) as store:
        found = await store.find_run(run)
        return await store.cancel(
            found.id, host=socket.gethostname(), is_alive=pid_alive, stale_after_s=STALE_AFTER_S
        )


async def run(
    settings: Settings,
    *,
    file: str | os.PathLike[str] | None = None,
    run: str | None = None,
    skip_invalid: bool = False,
    progress: ProgressOptions | None = None,
    handle_signals: bool = False,
    crash_point: CrashPoint = never,
    notify: Notify = lambda _message: None,
) -> RunReport:
    """Drain a run (the latest, or ``run``); with ``file``, submit it first (idempotently).

    The run is run with the settings it remembers (batchrunner.config.runsettings), but for the options that
    ``settings.given`` names; ``notify`` is told of every such difference, and of pending jobs rerouted
    by a given ``provider``. ``file`` is submitted the way it was before (``--skip-invalid`` included).
    Returns how the run ended; ``RunReport.exit_code`` is the CLI's exit code.
    """
    new_file = sqlite_file_to_create(settings.run.db) if file is not None else None
    submitted = False
    try:
        async with open_store(settings.run.db, create=file is not None) as store:
            found = await _the_run(store, settings, file, run, skip_invalid, notify)
            submitted = True
            settings = await _settings_of(store, found, settings, notify)
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
                progress=await _progress(store, found, progress),
                crash_point=crash_point,
            )
            report = await Runner(store, found, options, wiring).run(handle_signals=handle_signals)
            return replace(report, db=settings.run.db, runs_in_db=await store.run_count())
    except BaseException:
        if new_file is not None and not submitted:  # nothing was queued: leave no empty database behind
            remove_sqlite_file(new_file)
        raise


async def _the_run(
    store: Store,
    settings: Settings,
    file: str | os.PathLike[str] | None,
    name: str | None,
    skip_invalid: bool,
    notify: Notify,
) -> RunInfo:
    """The run to drain, submitting ``file`` first; a given provider reroutes an existing run's jobs."""
    before = None
    if file is not None:
        name = name or Path(file).stem
        before = await store.find_run_or_none(name)
        was_skipping = bool(before is not None and before.options.get("skip_invalid"))
        report = await _submit_into(
            store,
            Path(file),
            run=name,
            provider=settings.run.provider,
            model=settings.run.model,
            skip_invalid=skip_invalid or was_skipping,
            known_providers=settings.known_providers,
        )
        if report.rejected:
            notify(f"{report.rejected} invalid line(s) skipped; see {report.rejects_file}")
    found = await store.find_run(name)
    if file is None:  # (a submit makes its run the latest itself)
        await store.touch_run(found.id)
    provider = settings.run.provider
    if provider is not None and "provider" in settings.given and (file is None or before is not None):
        moved = await store.reroute_pending(found.id, provider)
        if moved:
            notify(f"rerouted {moved} pending job(s) of run {found.name!r} to provider {provider}")
    return found


async def _settings_of(store: Store, run: RunInfo, settings: Settings, notify: Notify) -> Settings:
    """The settings the run remembers, with this invocation's given options; remembered if new."""
    providers = await store.providers_left(run.id)
    if run.settings is not None:
        settings = runsettings.apply(run.settings, settings, notify)
    remembered = runsettings.snapshot(settings, providers, run.settings)
    if remembered != run.settings:
        await store.save_run_settings(run.id, remembered)
    return settings


@dataclass(frozen=True, kw_only=True, slots=True)
class ProgressOptions:
    """Where and how ``run`` reports progress."""

    stream: TextIO
    live: bool
    """Redraw one line (a terminal) instead of printing a summary line every ``interval_s``."""
    interval_s: float = 10.0


async def _progress(store: Store, run: RunInfo, options: ProgressOptions | None) -> Progress | None:
    if options is None:
        return None
    counts = await store.state_counts(run)  # counts only: the full stats() scans every result
    done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    interval = 0.5 if options.live else options.interval_s
    return Progress(
        total=sum(counts.values()),
        done_before=done,
        stream=options.stream,
        live=options.live,
        interval_s=interval,
    )
