"""The provider batch driver: submit a run's batches, find them again after a crash, wait, record results.

docs/batch.md is the contract. A batch's life in the store (``BatchState``): ``preparing`` (its row and
jobs committed) -> ``uploaded`` (OpenAI: the input file's id recorded) -> ``submitted`` (the provider's
batch id recorded) -> ``done`` (every line recorded) or ``failed`` (refused as a whole). Each step is
recorded as soon as the provider answers, and a step that may have happened without being recorded (a
crash between the provider's answer and our write) is looked for at the provider before it is done again:

- a ``preparing`` batch is first looked for with :meth:`BatchApi.find` (OpenAI: by the local id in its
  metadata; Anthropic: created since the row was committed, with the row's request count, and not
  already recorded by another row), then, for OpenAI, its upload by name (:meth:`BatchApi.find_upload`);
- only if nothing is found is the file built and uploaded, and the batch created.

So the same jobs are never in two live provider batches. Results are written under the batch's lease
(the job's ``lease_token`` is the batch's local id), so a line of a batch adopted by mistake, or written
twice after a crash mid-way, changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final, TypeVar

from batchrunner.engine.batchforming import build_input, form_batches
from batchrunner.engine.batchlines import job_id_of, line_outcome
from batchrunner.engine.crashpoints import CrashPoint, never
from batchrunner.engine.liveness import pid_alive
from batchrunner.errors import PermanentError, ProviderError, RateLimited, RunStoppingError, TransientError
from batchrunner.models import BatchInfo, BatchState, Outcome, RunInfo
from batchrunner.policy.pricing import PriceTable
from batchrunner.providers.batchapi import BatchApi, LineOutcome, RemoteBatch
from batchrunner.store.base import BatchStore

__all__ = ["HOLD_S", "BatchDriver", "BatchOptions", "WaitReport", "owner_gone"]

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_GROUP: Final = 500
"""Result lines written back per transaction."""
HOLD_S: Final = 3600.0
"""How long a process holds a batch it sends before another runner may take it over (a process found
dead on its own machine is taken over at once): longer than any upload and create take."""
SUBMIT_TRIES: Final = 5
"""Tries of one upload or create that fails transiently before the run gives up on it (it is recovered
on the next run: the row stays as it was)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchOptions:
    """How provider batches are formed and waited for (``run --mode batch`` flags)."""

    batch_size: int | None = None
    """At most this many requests per batch (below the provider's own limit)."""
    poll_s: float = 60.0
    deadline: datetime | None = None
    """When it passes, live batches are cancelled (their finished lines recorded, the rest pending)."""
    max_attempts: int = 6
    work_dir: Path | None = None
    """Where input files are built (the system's temporary directory by default)."""


@dataclass(kw_only=True, slots=True)
class WaitReport:
    """What waiting for the run's batches came to."""

    ended: int = 0
    succeeded: int = 0
    failed: int = 0
    requeued: int = 0
    """Jobs back to pending: expired or cancelled lines, retryable errors, jobs without a line."""
    cost_usd: Decimal = field(default_factory=lambda: Decimal(0))
    still_live: int = 0
    """Batches still running at the provider when waiting stopped (Ctrl-C)."""
    cancelled_at_deadline: int = 0


class BatchDriver:
    """Drives one run's provider batches; see the module docstring."""

    def __init__(
        self,
        store: BatchStore,
        run: RunInfo,
        api_for: Callable[[str], BatchApi],
        prices: PriceTable,
        options: BatchOptions,
        *,
        crash_point: CrashPoint = never,
        notify: Callable[[str], None] = lambda _message: None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.store, self.run, self.api_for, self.prices, self.options = store, run, api_for, prices, options
        self.crash_point, self.notify = crash_point, notify
        self.stop = stop or asyncio.Event()
        self._shown: dict[int, tuple[str | None, int, int]] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        """Who sends a batch (``batches.owner``): this process."""
        self._deadline_done = False

    # -- forming and submitting -------------------------------------------------------------------

    async def form(self, providers: list[str]) -> list[BatchInfo]:
        """Put the pending jobs of ``providers`` into new batches (rows only; :meth:`submit_live` sends)."""
        formed = []
        async for batch in form_batches(
            self.store,
            self.run.id,
            providers,
            self.api_for,
            batch_size=self.options.batch_size,
            crash_point=self.crash_point,
        ):
            formed.append(batch)
        return formed

    async def submit_live(self) -> list[BatchInfo]:
        """Make sure every live batch of the run is at the provider (submitting or recovering it), but for
        those another live process is sending right now (it records them; :meth:`wait` polls them)."""
        submitted = []
        gone = [owner for owner in await self.store.batch_owners(self.run.id) if owner_gone(owner)]
        for batch in await self.store.batches_of(self.run.id, live_only=True):
            if self.stop.is_set():
                break
            if batch.state is not BatchState.SUBMITTED:
                if not await self.store.hold_batch(batch, self.owner, HOLD_S, gone=gone):
                    self.notify(f"batch {batch.local_id}: another runner is sending it")
                    continue
                try:
                    batch = await self._submit(batch)
                except (PermanentError, RunStoppingError) as exc:
                    raise await self._refused(batch, exc) from exc
            submitted.append(batch)
        return submitted

    async def _refused(self, batch: BatchInfo, error: ProviderError) -> RunStoppingError:
        """The provider's batch API refused us (no batch API at that URL, a bad key): the jobs of this
        provider's batches not yet sent go back to pending, and the run stops saying so."""
        released = 0
        for other in await self.store.batches_of(self.run.id, live_only=True):
            if other.provider == batch.provider and other.remote_id is None and other.submitted_at is None:
                released += await self.store.release_batch(other, BatchState.FAILED, error=str(error))
        return RunStoppingError(
            f"{batch.provider}: its batch API refused batch {batch.local_id}: {error}; {released:,} job(s) "
            "are pending again (batchrunner run --mode realtime sends them in real time)"
        )

    async def _submit(self, batch: BatchInfo) -> BatchInfo:
        """Send one batch to the provider, looking for it there first (and again after every failed try:
        a create that timed out may have been made, and making it again would pay twice)."""
        api = self.api_for(batch.provider)
        for attempt in range(1, SUBMIT_TRIES + 1):
            batch = await self._refreshed(batch)  # what the last try recorded (file id, create sent)
            found = await self._recover(batch, api)
            if found is not None:
                self.notify(f"batch {batch.local_id}: found at the provider as {found.id} (recorded now)")
                return await self._record_submitted(batch, found)
            batch = await self._refreshed(batch)
            try:
                return await self._record_submitted(batch, await self._send(batch, api))
            except (RateLimited, TransientError) as exc:
                if attempt == SUBMIT_TRIES:
                    raise
                delay = _backoff(exc, attempt)
                log.warning(
                    "batch %s: %s; looking for it and trying again in %.0f s", batch.local_id, exc, delay
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, batch: BatchInfo, api: BatchApi) -> RemoteBatch:
        """Build the input file, upload it (OpenAI, unless its id is recorded) and create the batch."""
        path = await build_input(self.store, batch, api, self.options.work_dir)
        try:
            file_id = batch.file_id
            if file_id is None:
                file_id = await api.upload(batch.local_id, path)
                if file_id is not None:
                    self.crash_point("after-upload")
                    await self.store.update_batch(batch.id, file_id=file_id, state=BatchState.UPLOADED)
            # recorded before the create goes out: after a crash, only then is the batch looked for
            await self.store.update_batch(batch.id, submitted_at=datetime.now(UTC))
            remote = await api.create(batch.local_id, batch.endpoint, path, file_id)
            self.crash_point("after-create")
            return remote
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _refreshed(self, batch: BatchInfo) -> BatchInfo:
        for row in await self.store.batches_of(self.run.id, live_only=True):
            if row.id == batch.id:
                return row
        return batch

    async def _recover(self, batch: BatchInfo, api: BatchApi) -> RemoteBatch | None:
        """The provider batch a crash may have left unrecorded, if there is one; its upload, for OpenAI.

        Only a batch whose create was sent (``submitted_at`` is set just before) is looked for, and of the
        candidates (Anthropic's match on time and count only) the one made closest to that moment wins,
        never one another row has recorded.
        """
        if batch.file_id is None:
            file_id = await _tried(lambda: api.find_upload(batch.local_id))
            if file_id is not None:
                await self.store.update_batch(batch.id, file_id=file_id, state=BatchState.UPLOADED)
        sent_at = batch.submitted_at
        if sent_at is None:
            return None
        taken = await self.store.known_remote_ids(batch.provider)
        candidates = await _tried(lambda: api.find(batch.local_id, sent_at, batch.requests))
        fresh = [remote for remote in candidates if remote.id not in taken]
        if not fresh:
            return None
        return min(fresh, key=lambda remote: abs((remote.created_at - sent_at).total_seconds()))

    async def _record_submitted(self, batch: BatchInfo, remote: RemoteBatch) -> BatchInfo:
        now = datetime.now(UTC)
        values = {
            "remote_id": remote.id,
            "state": BatchState.SUBMITTED,
            "submitted_at": batch.submitted_at or now,
            "remote_status": remote.status,
            "file_id": remote.input_file_id or batch.file_id,
            "owner": None,
            "owner_until": None,
        }
        await self.store.update_batch(batch.id, **values)
        self.notify(f"batch {batch.local_id}: {batch.requests:,} request(s) of {_what(batch)}")
        self.notify(f"  submitted as {remote.id}")
        return _replace(batch, remote_id=remote.id, state=BatchState.SUBMITTED, submitted_at=now)

    # -- waiting and recording --------------------------------------------------------------------

    async def wait(self) -> WaitReport:
        """Poll the run's submitted batches until each has ended and its lines are recorded (or a stop)."""
        report = WaitReport()
        while not self.stop.is_set():
            live = [b for b in await self.store.batches_of(self.run.id, live_only=True) if b.remote_id]
            if not live:
                break
            await self._cancel_at_deadline(live, report)
            delay = self.options.poll_s
            for batch in live:
                if self.stop.is_set():
                    break
                try:
                    remote = await self.api_for(batch.provider).get(batch.remote_id or "")
                except (RateLimited, TransientError) as exc:
                    log.warning("batch %s: polling failed (%s); trying again", batch.local_id, exc)
                    delay = max(delay, exc.retry_after or 0.0) if isinstance(exc, RateLimited) else delay
                    continue
                self.crash_point("while-polling")
                await self._polled(batch, remote)
                if remote.ended:
                    await self._collect(batch, remote, report)
            if any(b.remote_id for b in await self.store.batches_of(self.run.id, live_only=True)):
                await self._sleep(delay)
        report.still_live = len(await self.store.batches_of(self.run.id, live_only=True))
        return report

    async def _cancel_at_deadline(self, live: list[BatchInfo], report: WaitReport) -> None:
        deadline = self.options.deadline
        if deadline is None or self._deadline_done or datetime.now(UTC) < deadline:
            return
        self._deadline_done = True
        for batch in live:
            try:
                await self.api_for(batch.provider).cancel(batch.remote_id or "")
                report.cancelled_at_deadline += 1
            except ProviderError as exc:
                log.warning("batch %s: could not cancel at the deadline: %s", batch.local_id, exc)
        self.notify(f"deadline passed: {report.cancelled_at_deadline} provider batch(es) cancelled")

    async def cancel_all(self) -> int:
        """Ask the provider to cancel every live batch of the run; returns how many were asked."""
        asked = 0
        for batch in await self.store.batches_of(self.run.id, live_only=True):
            if batch.remote_id is None:
                continue
            try:
                await self.api_for(batch.provider).cancel(batch.remote_id)
            except (
                RateLimited,
                TransientError,
            ) as exc:  # the others are still asked; the next cancel retries
                log.warning("batch %s: could not cancel it: %s", batch.local_id, exc)
                continue
            asked += 1
        return asked

    async def _polled(self, batch: BatchInfo, remote: RemoteBatch) -> None:
        await self.store.update_batch(
            batch.id,
            remote_status=remote.status,
            succeeded=remote.succeeded,
            errored=remote.errored,
            expired=remote.expired,
            canceled=remote.canceled,
            polled_at=datetime.now(UTC),
        )
        shown = (remote.status, remote.succeeded + remote.errored, remote.errored)
        if self._shown.get(batch.id) != shown:
            self._shown[batch.id] = shown
            done = remote.succeeded + remote.errored + remote.expired + remote.canceled
            self.notify(
                f"batch {batch.local_id}: {remote.status}, {done:,}/{remote.total:,} done"
                + (f", {remote.errored:,} failed" if remote.errored else "")
            )

    async def _collect(self, batch: BatchInfo, remote: RemoteBatch, report: WaitReport) -> None:
        """Record every line of an ended batch; the jobs without one go back to pending."""
        report.ended += 1
        if (remote.failure is not None and remote.total == 0) or remote.status == "failed":
            reason = f"{batch.provider}: the provider refused batch {remote.id}: {remote.failure or 'failed'}"
            report.failed += await self.store.fail_batch_jobs(batch, reason)
            self.notify(f"batch {batch.local_id}: {reason}")
            return
        group: list[LineOutcome] = []
        async for line in self.api_for(batch.provider).results(remote):
            group.append(line)
            if len(group) >= WRITE_GROUP:
                await self._write(batch, group, report)
                group = []
        await self._write(batch, group, report)
        report.requeued += await self.store.release_batch(batch, BatchState.DONE)

    async def _write(self, batch: BatchInfo, lines: list[LineOutcome], report: WaitReport) -> None:
        named = {job_id_of(batch, line.custom_id): line for line in lines}
        named.pop(None, None)
        held = await self.store.held_jobs(batch, [job_id for job_id in named if job_id is not None])
        outcomes: list[Outcome] = []
        for job_id, (model, attempt) in held.items():
            outcome, cost = line_outcome(
                batch,
                named[job_id],
                job_id=job_id,
                model=model,
                attempt=attempt,
                max_attempts=self.options.max_attempts,
                prices=self.prices,
            )
            outcomes.append(outcome)
            if cost is not None:
                report.cost_usd += cost
        if not outcomes:
            return
        written = await self.store.record_outcomes(outcomes)
        for outcome in outcomes:
            if outcome.lease.job_id not in written:
                continue
            if outcome.state.value == "succeeded":
                report.succeeded += 1
            elif outcome.state.value == "failed":
                report.failed += 1
            else:
                report.requeued += 1

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()


async def _tried(call: Callable[[], Awaitable[T]]) -> T:
    """A read of a batch endpoint (safe to repeat), tried again on 429s and transient errors."""
    for attempt in range(1, SUBMIT_TRIES + 1):
        try:
            return await call()
        except (RateLimited, TransientError) as exc:
            if attempt == SUBMIT_TRIES:
                raise
            await asyncio.sleep(_backoff(exc, attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _backoff(error: ProviderError, attempt: int) -> float:
    """The provider's Retry-After when it gave one, else 2, 4, 8 ... seconds (at most 60)."""
    if isinstance(error, RateLimited) and error.retry_after:
        return min(error.retry_after, 600.0)
    return float(min(2**attempt, 60))


def owner_gone(owner: str) -> bool:
    """A batch's owner (``host:pid``) is a process of this machine that no longer exists."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def _what(batch: BatchInfo) -> str:
    """``openai/gpt-4o-mini /v1/responses``: the provider, the model (OpenAI's) and the endpoint."""
    return (
        f"{batch.provider}/{batch.model} {batch.endpoint}"
        if batch.model
        else f"{batch.provider} {batch.endpoint}"
    )


def _replace(batch: BatchInfo, **values: object) -> BatchInfo:
    return dataclasses.replace(batch, **values)  # type: ignore[arg-type]
