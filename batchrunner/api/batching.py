"""``run --mode batch``, and any run with provider batches still live: the batch driver beside the realtime
runner (docs/batch.md "How a batch-mode run goes").

1. In batch mode, the pending jobs of providers with a batch API are formed into provider batches (rows
   committed first), and every live batch of the run is submitted, or found again after a crash.
2. ``--no-wait`` stops here. Otherwise the jobs of the other providers run in real time, restricted to
   those providers, while the driver polls the batches and records each one's lines as it ends.
3. Expired or cancelled lines come back pending. With ``--spill realtime`` (or when ``--deadline``
   passed), they are then run in real time, under the usual limits; otherwise they are left pending.

Ctrl-C while waiting leaves the provider batches running: the next ``batchrunner run`` picks them up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from batchrunner.api.batchapis import BatchApis
from batchrunner.config import Settings
from batchrunner.engine.batchdriver import BatchDriver, BatchOptions, WaitReport
from batchrunner.engine.options import EngineOptions, RunReport, Wiring
from batchrunner.engine.runner import Runner
from batchrunner.models import RunInfo
from batchrunner.store.store import Store

__all__ = ["BatchMode", "drive_batches"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchMode:
    """How ``run --mode batch`` sends and waits (its flags)."""

    batch_size: int | None = None
    poll_s: float = 60.0
    wait: bool = True
    """False (``--no-wait``): submit the batches and return at once."""
    deadline_s: float | None = None
    """Cancel the batches still running this long after the start, and spill their rest to real time."""
    spill: bool = False
    """``--spill realtime``: jobs the batches did not answer (expired, cancelled) run in real time after."""


async def drive_batches(
    store: Store,
    run: RunInfo,
    settings: Settings,
    engine: tuple[EngineOptions, Wiring],
    batch: BatchMode,
    *,
    forming: bool,
    handle_signals: bool,
    notify: Callable[[str], None],
) -> RunReport:
    """Batch mode (``forming``: new batches are formed), or a realtime run that has live batches to wait
    for (only ``batch.poll_s`` applies then)."""
    options, wiring = engine
    apis = BatchApis(settings)
    stop = asyncio.Event()
    mode = batch if forming else None
    deadline = None
    if mode is not None and mode.deadline_s is not None:
        deadline = datetime.now(UTC) + timedelta(seconds=mode.deadline_s)
    driver = BatchDriver(
        store,
        run,
        apis,
        settings.prices,
        BatchOptions(
            batch_size=None if mode is None else mode.batch_size,
            poll_s=batch.poll_s,
            deadline=deadline,
            max_attempts=options.max_attempts,
        ),
        crash_point=wiring.crash_point,
        notify=notify,
        stop=stop,
    )
    left = await store.providers_left(run.id)
    batched = [name for name in left if settings.provider_config(name).batch_api]
    realtime = frozenset(left) - frozenset(batched) if mode is not None else None
    runner: list[Runner] = []
    interrupted = [False]

    def on_signal() -> None:
        if interrupted[0]:
            os._exit(130)  # a second Ctrl-C: at once
        interrupted[0] = True
        log.warning("stopping: the provider batches keep running (Ctrl-C again to quit at once)")
        stop.set()
        for each in runner:
            each.request_stop(interrupted=True)

    signals = _Signals(on_signal) if handle_signals else None
    try:
        if mode is not None:
            formed = await driver.form(batched)
            if formed:
                notify(f"{sum(b.requests for b in formed):,} job(s) put in {len(formed)} provider batch(es)")
            if realtime:
                notify(f"in real time (no batch API): {', '.join(sorted(realtime))}")
        await driver.submit_live()
        if mode is not None and not mode.wait:
            live = await store.batches_of(run.id, live_only=True)
            notify("submitted: " + ", ".join(f"{b.local_id} ({b.remote_id})" for b in live))
            return await _report(store, run, live=len(live))
        report_of_realtime, waited = await _side_by_side(
            store, run, engine, realtime, driver.wait(), runner, stop
        )
        spill = mode is not None and (mode.spill or waited.cancelled_at_deadline > 0)
        if spill and not stop.is_set() and not interrupted[0]:
            spilled = Runner(store, run, replace(options, providers=None), wiring)
            runner.append(spilled)
            report_of_realtime = await spilled.run()
        report = report_of_realtime or RunReport(stats=await store.stats(run))
        return replace(
            report,
            stats=await store.stats(run),  # the realtime runner's figures predate the batches' lines
            interrupted=report.interrupted or interrupted[0],
            batches_live=waited.still_live,
        )
    finally:
        if signals is not None:
            signals.remove()
        await apis.aclose()


async def _side_by_side(
    store: Store,
    run: RunInfo,
    engine: tuple[EngineOptions, Wiring],
    realtime: frozenset[str] | None,
    waiting: Coroutine[Any, Any, WaitReport],
    runner: list[Runner],
    stop: asyncio.Event,
) -> tuple[RunReport | None, WaitReport]:
    """The realtime runner (for ``realtime`` providers; all when ``None``) and the batch wait, together."""
    options, wiring = engine
    wait_task = asyncio.create_task(waiting)
    report = None
    if realtime is None or realtime:
        runner.append(Runner(store, run, replace(options, providers=realtime), wiring))
        report = await runner[-1].run()
    return report, await wait_task


async def _report(store: Store, run: RunInfo, *, live: int) -> RunReport:
    return RunReport(stats=await store.stats(run), batches_live=live)


class _Signals:
    def __init__(self, handler: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, handler)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
