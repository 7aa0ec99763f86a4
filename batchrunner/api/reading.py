"""The verbs that read a run: ``status``, ``runs``, ``export`` (to a file) and ``results`` (to Python)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from batchrunner.api.session import open_store, resolved
from batchrunner.config import Settings
from batchrunner.engine.liveness import runner_alive
from batchrunner.errors import UsageError
from batchrunner.export import ExportFormat, ExportOptions, jsonl_record, write_export
from batchrunner.models import AttemptRow, BatchesSummary, RunInfo, RunStats, TimingFigures
from batchrunner.store.insights import RunInsights
from batchrunner.store.reports import Only
from batchrunner.store.store import Store


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusReport:
    """``status``: the run's aggregates and what is happening now."""

    stats: RunStats
    insights: RunInsights
    batches: BatchesSummary = field(default_factory=BatchesSummary)
    """The run's provider batches (none for a run never in batch mode)."""
    timing: TimingFigures = field(default_factory=TimingFigures)
    """Latency and TTFT percentiles over the run and the last minute; the last minute's throughput."""

    @property
    def remaining(self) -> int:
        states = self.stats.by_state
        return states["pending"] + states["claimed"] + states["running"] + states["batched"]

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


async def attempts(
    *,
    settings: Settings | None = None,
    run: str | None = None,
    job: str | None = None,
    failed: bool = False,
    limit: int = 20,
) -> list[AttemptRow]:
    """The latest ``limit`` attempts of a run (the latest by default), newest first: of job ``job`` (its
    custom id) only, or only those that failed. A ``job`` the run does not have is a UsageError."""
    async with open_store(resolved(settings).run.db, create=False) as store:
        found = await store.find_run(run)
        rows = await store.attempt_rows(found, custom_id=job, failed=failed, limit=limit)
        if job is not None and not rows and not await store.has_job(found, job):
            raise UsageError(f"run {found.name!r} has no job {job!r}")
    return rows


async def status(*, settings: Settings | None = None, run: str | None = None) -> StatusReport:
    """Counts, attempts, tokens, cost, throughput, ETA and errors of a run (the latest by default)."""
    async with open_store(resolved(settings).run.db) as store:
        return await status_of(store, await store.find_run(run))


async def status_of(store: Store, run: RunInfo) -> StatusReport:
    """``status`` of ``run`` in an open store (the dashboard keeps one open)."""
    stats, insights = await store.stats(run), await store.insights(run)
    batches = await store.batch_summary(run)
    timing = await store.timing(run)
    now = datetime.now(UTC)
    runners = [
        replace(r, alive=runner_alive(host=r.host, pid=r.pid, heartbeat_at=r.heartbeat_at, now=now))
        for r in insights.runners
    ]
    return StatusReport(
        stats=stats, insights=replace(insights, runners=runners), batches=batches, timing=timing
    )


async def runs(*, settings: Settings | None = None) -> list[RunInfo]:
    """Every run in the database, oldest first, with its job count."""
    async with open_store(resolved(settings).run.db) as store:
        return await store.list_runs()


async def export(
    *,
    settings: Settings | None = None,
    run: str | None = None,
    format: ExportFormat = "csv",
    output: str = "-",
    only: Only = "all",
    sanitize: bool = True,
) -> int:
    """Stream a run's results to ``output`` (a path or ``-``) in manifest order; return the row count."""
    async with open_store(resolved(settings).run.db) as store:
        found = await store.find_run(run)
        keys = tuple(await store.metadata_keys(found)) if format == "csv" else ()
        run_key = f"{found.id}:{found.created_at.isoformat()}"
        options = ExportOptions(format=format, sanitize=sanitize, metadata_keys=keys, run_key=run_key)
        pages = store.export_pages(found, only, last_attempt=format == "openai-batch")
        return await write_export(pages, output, options)


async def results(
    *, settings: Settings | None = None, run: str | None = None, only: Only = "all"
) -> AsyncGenerator[dict[str, Any]]:
    """A run's jobs with their results, in manifest order, as the records of the JSONL export
    (``custom_id``, ``status``, ``output``, ``response``, ``usage``, ``cost_usd``, ``error``, ...).

    Read page by page, so memory stays flat however large the run; the store stays open while the
    iteration goes on.
    """
    async with open_store(resolved(settings).run.db) as store:
        found = await store.find_run(run)
        async for page in store.export_pages(found, only):
            for row in page:
                yield jsonl_record(row)
