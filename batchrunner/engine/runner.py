"""The run loop: claim jobs under leases, run them on bounded workers, checkpoint, resume after a crash.

A runner registers itself, takes back the jobs of runners that died (docs/reliability.md rule 3), then:

- the **feeder** claims jobs in batches (attempts counted in the claim, rule 1) into a local queue of at
  most twice the concurrency, and decides when the run is done (nothing pending or running in the
  database) or must wait for a backoff;
- **workers** (``concurrency`` of them) take one job at a time through
  :func:`batchrunner.engine.attempt.perform` and hand its outcome to the **checkpointer**, which writes
  them in groups under their leases (rule 2);
- the **heartbeat** renews this runner's leases and reclaims those of dead runners.

Stopping (Ctrl-C, SIGTERM, an auth or quota error, the budget, a systematic failure: see
:mod:`batchrunner.engine.systematic`): claim nothing more, give back queued jobs
with their attempt refunded, let calls in flight finish within a grace period, checkpoint, and release
what is left (rule 9). A second signal exits at once; the next run reclaims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import socket
from datetime import UTC, datetime
from decimal import Decimal

from batchrunner.engine.attempt import AttemptContext, LeaseLost, NotSent, Stop, perform
from batchrunner.engine.checkpoint import Checkpointer
from batchrunner.engine.coordination import RunCoordination
from batchrunner.engine.errorlog import ErrorLog
from batchrunner.engine.leases import LeaseGuard
from batchrunner.engine.options import EngineOptions, RunReport, Wiring
from batchrunner.engine.reclaim import Reclaimer
from batchrunner.engine.sendjournal import SendJournal, default_directory
from batchrunner.engine.sendmarks import SendMarks
from batchrunner.engine.systematic import OutcomeFilter
from batchrunner.models import ClaimedJob, Outcome, RunInfo
from batchrunner.policy.budget import Budget
from batchrunner.policy.ratelimit import ProviderLimiter
from batchrunner.providers.base import Provider
from batchrunner.store.base import EngineStore

log = logging.getLogger(__name__)


class Runner:
    """Drains one run from one process; see the module docstring."""

    def __init__(self, store: EngineStore, run: RunInfo, options: EngineOptions, wiring: Wiring) -> None:
        self.store, self.run_info, self.options, self.wiring = store, run, options, wiring
        self.runner_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._providers: dict[str, Provider] = {}
        self._limiters: dict[str, ProviderLimiter] = {}
        self._queue: asyncio.Queue[ClaimedJob | None] = asyncio.Queue()
        self._in_flight: dict[int, ClaimedJob] = {}
        self._unsent: list[ClaimedJob] = []
        """Jobs a worker took, or held waiting for its limits, when a stop came: given back, never sent."""
        self._broken: list[ClaimedJob] = []
        """Jobs whose attempt raised an unexpected error: given back (the call may have been sent)."""
        self._room = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopped: str | None = None
        self._interrupted = False
        self._cancelled = False
        self._lost = 0
        self._coordination = RunCoordination(
            store, run.id, self.runner_id, stale_after_s=options.stale_after_s
        )
        self._guard = LeaseGuard(
            store,
            self.runner_id,
            lease_s=options.lease_s,
            fresh_s=options.stale_after_s / 2,
            on_return=self._coordination.hold,  # the others may have stopped counting this runner
        )
        journal_dir = wiring.journal_dir or default_directory()
        self._journal = SendJournal(journal_dir, self.runner_id)
        self._reclaimer = Reclaimer(
            store,
            run.id,
            journal_dir=journal_dir,
            max_attempts=options.max_attempts,
            stale_after_s=options.stale_after_s,
        )
        self._marks = SendMarks(store, self._journal)
        self._checkpointer = Checkpointer(
            store,
            min_gap_s=options.checkpoint_gap_s,
            on_written=self._on_written,
            crash_point=wiring.crash_point,
        )
        self._errors = ErrorLog(where=lambda name: self._provider(name).base_url, run=run.name)
        self._outcomes = OutcomeFilter(
            write=self._checkpointer.add, stop=self.request_stop, enabled=options.stop_on_systematic
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False) -> RunReport:
        """Drain the run; returns when it is done, stopped or interrupted."""
        await self._start()
        if handle_signals:
            self._install_signal_handlers()
        tasks = [asyncio.create_task(self._checkpointer.run(), name="checkpointer")]
        tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        tasks.append(asyncio.create_task(self._coordination.run(), name="coordination"))
        tasks.append(asyncio.create_task(self._watch_for_cancel(), name="cancel-watch"))
        workers = [
            asyncio.create_task(self._worker(), name=f"worker-{n}") for n in range(self.options.concurrency)
        ]
        progress = self.wiring.progress
        if progress is not None:
            context = self._context
            progress.in_flight = lambda: context.in_flight
            tasks.append(asyncio.create_task(progress.run(), name="progress"))
        try:
            await self._feed()
        finally:
            await self._shutdown(workers, tasks)
            if handle_signals:
                self._remove_signal_handlers()
        self._errors.close()
        stats = await self.store.stats(self.run_info)
        if progress is not None:
            progress.finish(stats)
        return RunReport(
            stats=stats,
            stopped=self._stopped,
            interrupted=self._interrupted,
            cancelled=self._cancelled,
            lost_leases=self._lost,
            dropped_unsent=self._guard.dropped,
        )

    def request_stop(self, reason: str | None = None, *, interrupted: bool = False) -> None:
        """Stop claiming and drain (idempotent); ``reason`` makes it a stopped run (exit 3)."""
        if reason and not self._stopped:
            self._stopped = reason
        self._interrupted = self._interrupted or interrupted
        self._stop_requested.set()
        self._room.set()

    async def _start(self) -> None:
        options, run = self.options, self.run_info
        providers = await self.store.providers_left(run.id)
        for name in providers:
            self._provider(name)  # a missing key fails here, before anything is claimed
        await self.store.register_runner(
            runner_id=self.runner_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            run_id=run.id,
            limits=self._limits_in_force(providers),
        )
        await self._reclaimer.take_back()
        # a sum over every result of the run: only worth its time at start-up when there is a cap
        spent = Decimal(0) if options.max_cost_usd is None else await self.store.spent_usd(run)
        self._context = AttemptContext(
            runner_id=self.runner_id,
            providers=self._provider,
            limiters=self._limiter,
            options=options,
            wiring=self.wiring,
            budget=Budget(options.max_cost_usd, spent),
            rng=self.wiring.rng or random.Random(),
            unknown_price_models=set(),
            on_pause=self._coordination.publish_pause,
            stop_requested=self._stop_requested,
            lease_check=self._guard.still_ours,
            mark_sent=self._marks.mark,
        )

    async def _feed(self) -> None:
        """Claim jobs while there is room; return when the run is done or a stop was requested."""
        concurrency = self.options.concurrency
        while not self._stop_requested.is_set():
            if self._queue.qsize() >= concurrency:
                await self._wait_for_room(self.options.poll_s)
                continue
            want = 2 * concurrency - self._queue.qsize()
            was_idle = not self._holds_jobs()
            claimed = await self.store.claim(
                self.run_info.id, self.runner_id, want, self.options.lease_s, providers=self.options.providers
            )
            if claimed:
                self._guard.claimed(job.lease for job in claimed)
                self.wiring.crash_point("after-claim")
                if was_idle:  # before any of them is sent: others at work may need to shrink first
                    await self._coordination.became_busy()
                for job in claimed:
                    self._queue.put_nowait(job)
                continue
            if await self._finished_or_waited():
                return

    async def _finished_or_waited(self) -> bool:
        """Nothing to claim now: True when the run is done, else wait a little (backoffs, other runners)."""
        if self._holds_jobs():
            await self._wait_for_room(self.options.poll_s / 4)
            return False
        state = await self.store.queue_state(self.run_info.id, providers=self.options.providers)
        if state.pending == 0 and self._outcomes.held:  # nothing else to send: did all of them fail alike?
            await self._settle_systematic()
            return False
        if state.pending == 0 and state.running == 0:
            return True
        wait = self.options.poll_s
        if state.next_due_at is not None and state.pending == state.held_back:
            wait = min(
                max((state.next_due_at - datetime.now(UTC)).total_seconds(), 0.01), self.options.poll_s
            )
        await self._wait_for_room(wait)
        return False

    def _holds_jobs(self) -> bool:
        """Jobs claimed and not yet checkpointed: queued, in a worker, or answered and not yet written."""
        return bool(self._queue.qsize() or self._in_flight or self._checkpointer.backlog)

    async def _wait_for_room(self, at_most_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                await self._room.wait()
        self._room.clear()

    async def _worker(self) -> None:
        while (job := await self._queue.get()) is not None:
            if self._stop_requested.is_set():  # e.g. a 401 just came back: send nothing more
                self._unsent.append(job)
                continue
            if self._queue.qsize() < self.options.concurrency:
                self._room.set()
            self._in_flight[job.lease.job_id] = job
            try:
                result = await perform(job, self._context)
            except Exception:  # a bug: end the run (shutdown re-raises it) rather than wait on this job
                self._broken.append(job)
                self.request_stop()
                raise
            finally:
                del self._in_flight[job.lease.job_id]
            if isinstance(result, NotSent):
                self._unsent.append(job)
                continue
            if isinstance(result, LeaseLost):
                await self._let_go(job)
                continue
            if isinstance(result, Stop):
                await self._stop_job(job, result)
            else:
                self._outcomes.add(job, result)
            self._errors.attempt(job, result.outcome if isinstance(result, Stop) else result)

    async def _let_go(self, job: ClaimedJob) -> None:
        """A job whose lease was lost: someone else holds it now. Released all the same (fenced: a no-op
        unless it is ours after all, and then it goes back to the queue instead of staying ``running``)."""
        try:
            await self.store.release([job.lease])
        except Exception as exc:  # tried again at shutdown
            log.warning("could not release job %d: %s", job.lease.job_id, exc)
            self._unsent.append(job)

    async def _stop_job(self, job: ClaimedJob, stop: Stop) -> None:
        self.request_stop(stop.reason)
        if stop.outcome is not None:
            self._checkpointer.add(stop.outcome)
        else:
            await self.store.release([job.lease])

    async def _settle_systematic(self) -> None:
        """The last failures held: systematic, unless some job of their provider+model succeeded before."""
        run_id = self.run_info.id
        undecided = self._outcomes.undecided()
        healthy = [key for key in undecided if await self.store.has_succeeded(run_id, *key)]
        self._outcomes.settle(stop=True, healthy=healthy)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_s)
            try:
                await self._guard.beat()
                await self._reclaimer.take_back()
            except Exception as exc:  # a failed heartbeat is retried next beat; the lease has margin
                log.warning("heartbeat failed: %s", exc)
            if self._checkpointer.error is not None:
                self.request_stop(f"could not checkpoint results: {self._checkpointer.error}")

    async def _watch_for_cancel(self) -> None:
        """Stop within ``cancel_poll_s`` of a ``batchrunner cancel`` (the jobs in flight still finish)."""
        while True:
            await asyncio.sleep(self.options.cancel_poll_s)
            try:
                cancelled = await self.store.run_cancelled(self.run_info.id)
            except Exception as exc:  # the heartbeat reports a database that is away
                log.debug("could not check for a cancel: %s", exc)
                continue
            if cancelled:
                self._cancelled = True
                self.request_stop(f"run {self.run_info.name!r} was cancelled (batchrunner cancel)")
                return

    def _on_written(self, batch: list[Outcome], accepted: set[int]) -> None:
        self._lost += len(batch) - len(accepted)
        self._room.set()  # the feeder may be waiting for these jobs to leave `running` to see the end
        if self.wiring.progress is not None:
            self.wiring.progress.on_written(batch, accepted)

    # -- stopping -----------------------------------------------------------------------------------

    async def _shutdown(self, workers: list[asyncio.Task[None]], tasks: list[asyncio.Task[None]]) -> None:
        queued = self._drain_queue()
        if queued:  # at once: another runner may take them while calls in flight finish
            await self.store.release([job.lease for job in queued])
        for _ in workers:
            self._queue.put_nowait(None)
        done, pending = await asyncio.wait(workers, timeout=self.options.grace_s)
        if self._unsent:
            await self.store.release([job.lease for job in self._unsent])
        # taken before the cancel: a cancelled worker drops its job from _in_flight on the way out
        abandoned = list(self._in_flight.values()) + self._broken
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._outcomes.settle(stop=False)  # failures held back, undecided: given back, attempt refunded
        await self._marks.close()
        await self._checkpointer.close()
        await self._coordination.close()
        if abandoned:  # cut off mid-call: recorded as interrupted if it was sent; the job goes back
            leases = [job.lease for job in abandoned]
            await self.store.release(leases, max_attempts=self.options.max_attempts)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.mark_stopped([self.runner_id])
        self._journal.close()
        for provider in self._providers.values():
            await provider.aclose()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _drain_queue(self) -> list[ClaimedJob]:
        jobs = []
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                jobs.append(job)
        return jobs

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    def _on_signal(self) -> None:
        if self._stop_requested.is_set() and self._interrupted:
            os._exit(130)  # a second Ctrl-C: at once; the next run reclaims what this one held
        log.warning("stopping: finishing calls in flight (Ctrl-C again to quit at once)")
        self.request_stop(interrupted=True)

    # -- providers ----------------------------------------------------------------------------------

    def _provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = self.wiring.provider_for(name)
        return self._providers[name]

    def _limiter(self, name: str) -> ProviderLimiter:
        if name not in self._limiters:
            limiter = self.wiring.limiter(self.wiring.limits_for(name), name)
            self._limiters[name] = self._coordination.adopt(name, limiter)
        return self._limiters[name]

    def _limits_in_force(self, providers: list[str]) -> dict[str, object]:
        """What this runner enforces, for ``status`` (the run's totals; each live runner takes a share)."""
        limits: dict[str, object] = {"concurrency": self.options.concurrency}
        for name in providers:
            configured = self.wiring.limits_for(name)
            limits[name] = {"rpm": configured.rpm, "tpm": configured.tpm}
        return limits
