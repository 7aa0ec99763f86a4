"""What the dashboard shows: a snapshot of a run, read again each second, and its JSON document.

A :class:`Watcher` holds one store open for as long as the dashboard serves, and only reads it. It may be
started before the database or the run exists: a snapshot then says what it is waiting for, and the next one
tries again. The status part of the document is the same as ``status --json``: the caller passes the
function that renders it (the CLI's), so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchrunner.api.reading import StatusReport, status_of
from batchrunner.errors import StoreError, UsageError
from batchrunner.models import AttemptRow, RunInfo
from batchrunner.store.store import Store
from batchrunner.store.timeline import Timeline

__all__ = ["Snapshot", "StatusFields", "Waiting", "Watcher", "snapshot_document"]

StatusFields = Callable[[StatusReport], Mapping[str, Any]]
"""A status report as the fields of ``status --json`` (``json.loads(cli.render.status_json(report))``)."""

LATEST_ERRORS = 8
PERCENTILES = (50, 95, 99)
BUCKETS = 60
"""The plots' points: the last 60 buckets of the first width that holds the run since its first activity
(1 to 10 minutes), so a short run is not a spike at the edge of 10 minutes."""
BUCKET_WIDTHS_S = (1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """One look at a run: its status, its recent time series, its latest errors and pauses."""

    taken_at: datetime
    runs: list[RunInfo]
    status: StatusReport
    timeline: Timeline
    errors: list[AttemptRow]
    """The latest failed attempts within the plotted span, newest first (their messages redacted when
    they were recorded)."""
    pauses: dict[str, float]
    """Providers paused by a 429 now, with the seconds left."""
    outputs: list[tuple[str, str]] | None = None
    """The latest answers ``(custom_id, text)``; None unless content is shown."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Waiting:
    """No run to show yet: no database, or no such run (the next snapshot looks again)."""

    taken_at: datetime
    reason: str
    runs: list[RunInfo]


class Watcher:
    """Snapshots of the runs of one database, read-only, over one store opened on first need."""

    def __init__(self, db: str, *, show_content: bool = False) -> None:
        self._db = db
        self._show_content = show_content
        self._store: Store | None = None
        self._opening = asyncio.Lock()

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def _opened(self) -> Store:
        async with self._opening:
            if self._store is None:
                self._store = await Store.open(self._db, create=False)
            return self._store

    async def snapshot(self, run: str | None) -> Snapshot | Waiting:
        """The run named ``run`` (the latest by default) now, or what the dashboard waits for."""
        now = datetime.now(UTC)
        try:
            store = await self._opened()
        except UsageError as exc:  # no database yet
            return Waiting(taken_at=now, reason=str(exc), runs=[])
        except StoreError as exc:  # a database a runner is creating right now: its schema is not all there
            await self.close()
            return Waiting(taken_at=now, reason=f"the database is not ready yet: {exc}", runs=[])
        runs = await store.list_runs()
        try:
            found = await store.find_run(run)
        except UsageError as exc:  # no run yet, or not this one
            return Waiting(taken_at=now, reason=str(exc), runs=runs)
        report = await status_of(store, found)
        stats = report.stats
        since = (now - stats.first_activity).total_seconds() if stats.first_activity else 0.0
        width = next((w for w in BUCKET_WIDTHS_S if w * BUCKETS >= since), BUCKET_WIDTHS_S[-1])
        return Snapshot(
            taken_at=now,
            runs=runs,
            status=report,
            timeline=await store.timeline(found, span_s=width * BUCKETS, bucket_s=width),
            errors=await store.latest_errors(found, within_s=width * BUCKETS, limit=LATEST_ERRORS),
            pauses=await store.active_pauses(found.id),
            outputs=await store.latest_outputs(found) if self._show_content else None,
        )


def snapshot_document(snapshot: Snapshot | Waiting, status_fields: StatusFields) -> dict[str, Any]:
    """The JSON document the dashboard pushes: the fields of ``status --json`` and, beside them, ``runs``,
    ``series``, ``latest_errors``, ``pauses`` and ``outputs`` (``--show-content`` only); or, while there
    is no run to show, ``waiting`` (the reason) and ``runs``."""
    runs = [{"name": r.name, "jobs": r.jobs, "created_at": r.created_at.isoformat()} for r in snapshot.runs]
    if isinstance(snapshot, Waiting):
        return {"taken_at": snapshot.taken_at.isoformat(), "waiting": snapshot.reason, "runs": runs}
    document = dict(status_fields(snapshot.status))
    document.update(
        taken_at=snapshot.taken_at.isoformat(),
        runs=runs,
        series=_series(snapshot.timeline),
        latest_errors=[_error(row) for row in snapshot.errors],
        pauses=[{"provider": p, "seconds_left": round(s, 1)} for p, s in sorted(snapshot.pauses.items())],
    )
    if snapshot.outputs is not None:
        document["outputs"] = [{"custom_id": cid, "output": text} for cid, text in snapshot.outputs]
    return document


def _series(timeline: Timeline) -> dict[str, Any]:
    """Parallel lists, one entry a bucket, oldest first."""
    width, buckets = timeline.bucket_s, timeline.buckets
    classes = sorted({cls for bucket in buckets for cls in bucket.errors})
    return {
        "bucket_s": width,
        "t": [bucket.start.isoformat() for bucket in buckets],
        "jobs_per_s": [round(bucket.succeeded / width, 3) for bucket in buckets],
        "tokens_per_s": [round(bucket.tokens / width, 1) for bucket in buckets],
        "latency_ms": {f"p{q}": [_round(bucket.percentile(q)) for bucket in buckets] for q in PERCENTILES},
        "ttft_ms": {
            f"p{q}": [_round(bucket.percentile(q, "ttft")) for bucket in buckets] for q in PERCENTILES
        },
        "rate_limited": [bucket.rate_limited for bucket in buckets],
        "errors": {cls: [bucket.errors.get(cls, 0) for bucket in buckets] for cls in classes},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _error(row: AttemptRow) -> dict[str, Any]:
    return {
        "custom_id": row.custom_id,
        "attempt": row.number,
        "at": (row.finished_at or row.started_at).isoformat(),
        "status": row.status_code,
        "error_class": row.error_class,
        "error": row.error_message,
    }
