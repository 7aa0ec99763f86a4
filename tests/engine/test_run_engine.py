"""The runner's own stopping paths, in-process with engine options the CLI does not expose (a short grace).

The parts are wired as ``api.run`` wires them (settings -> providers, limits, prices) against the fake
server; only :class:`EngineOptions` differs, so a stop can be driven and timed from the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers.database import snapshot
from helpers.fake_server_fixtures import StartFakeServer
from helpers.invariants import check_invariants
from helpers.manifests import prompts, write_manifest
from helpers.running import settings_for

from batchrunner import api
from batchrunner.config import Settings
from batchrunner.engine.checkpoint import Checkpointer
from batchrunner.engine.options import EngineOptions, Wiring
from batchrunner.engine.runner import Runner
from batchrunner.models import AttemptRecord, JobState, Lease, Outcome
from batchrunner.providers.base import Provider, ProviderRequest, ProviderResponse
from batchrunner.providers.registry import build_provider


@asynccontextmanager
async def engine(settings: Settings, manifest: Path, options: EngineOptions) -> AsyncIterator[Runner]:
    """A Runner for ``manifest``'s run, built as ``api.run`` builds it but with ``options``."""
    submitted = await api.submit(manifest, settings=api.settings(db=settings.run.db))
    async with api.open_store(settings.run.db) as store:
        wiring = Wiring(
            provider_for=lambda name: build_provider(name, settings.provider_settings(name)),
            limits_for=settings.rate_limits,
            prices=settings.prices,
        )
        yield Runner(store, await store.find_run(submitted.run), options, wiring)


async def test_calls_cut_off_at_the_grace_deadline_go_back_to_the_queue(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    """A stop whose calls outlive the grace period: they are cut off, and their jobs are released at once
    (pending, the attempt kept: it may have been billed), not left running under a dead lease."""
    jobs = prompts(3, "grace", {0: "hang", 1: "hang"})
    server = fake_server(latency_ms=1)
    db = tmp_path / "grace.db"
    settings = settings_for(server.openai_base_url, db, concurrency=4)
    options = EngineOptions(concurrency=4, timeout_s=60, grace_s=0.3)
    async with engine(settings, write_manifest(tmp_path / "grace.jsonl", jobs), options) as runner:
        running = asyncio.create_task(runner.run())
        for _ in range(500):
            if server.stats()["in_flight"] == 2 and server.stats()["answers_total"] == 1:
                break
            await asyncio.sleep(0.01)
        runner.request_stop(interrupted=True)
        report = await asyncio.wait_for(running, 10)

    assert report.exit_code == 130
    snap = snapshot(db)
    assert snap.states() == {"succeeded": 1, "pending": 2}
    for cid in ("grace-000", "grace-001"):
        assert snap.jobs[cid]["attempts"] == 1 and snap.jobs[cid]["lease_token"] is None
    assert all(r["stopped_at"] is not None for r in snap.runners)
    check_invariants(snap, server.stats(), ids=jobs, reference=None, stopped=True, in_flight_at_kills=2)

    # the next run takes them at once (no lease to wait out); the hang was only their first attempt
    report = await api.run(settings=settings)
    assert report.exit_code == 0
    check_invariants(snapshot(db), server.stats(), ids=jobs, reference=None, in_flight_at_kills=2)


class _SlowStore:
    """A store whose group writes take a while, recording what was written."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.writing = asyncio.Event()

    async def record_outcomes(self, batch: list[Outcome]) -> set[int]:
        self.writing.set()
        await asyncio.sleep(0.05)
        self.written += [o.lease.job_id for o in batch]
        return {o.lease.job_id for o in batch}


def _outcome(job_id: int) -> Outcome:
    attempt = AttemptRecord(number=1, runner_id="r", started_at=datetime.now(UTC))
    return Outcome(lease=Lease(job_id=job_id, token="t"), attempt=attempt, state=JobState.SUCCEEDED)


async def test_checkpointer_close_waits_for_every_write() -> None:
    """``close`` returns only when everything handed over is written, even while a group is being
    written and more outcomes wait behind it (the shutdown then closes the store)."""
    store = _SlowStore()
    checkpointer = Checkpointer(store, min_gap_s=0.01)  # type: ignore[arg-type]
    loop = asyncio.create_task(checkpointer.run())
    checkpointer.add(_outcome(1))
    await store.writing.wait()  # the loop is now writing job 1
    checkpointer.add(_outcome(2))
    await checkpointer.close()
    assert store.written == [1, 2]
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop


class _BrokenProvider:
    """The real provider, except that a prompt containing ``boom`` raises an error no adapter would."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.base_url = inner.base_url

    async def call(self, request: ProviderRequest) -> ProviderResponse:
        if "boom" in request.body["messages"][-1]["content"]:
            raise RuntimeError("a bug in a provider adapter")
        return await self.inner.call(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_unexpected_error_in_a_worker_stops_the_run_instead_of_hanging(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    """A bug that escapes ``perform`` ends the run with that error (not a run waiting forever for a job
    stuck in ``running``), and the job goes back to the queue at once."""
    jobs = prompts(12, "bug", {5: "ok"})
    jobs["bug-005"] = "boom"
    server = fake_server(latency_ms=2)
    db = tmp_path / "bug.db"
    settings = settings_for(server.openai_base_url, db, concurrency=2)
    async with engine(
        settings, write_manifest(tmp_path / "bug.jsonl", jobs), EngineOptions(concurrency=2)
    ) as runner:
        runner.wiring.provider_for = lambda name: _BrokenProvider(
            build_provider(name, settings.provider_settings(name))
        )
        with pytest.raises(RuntimeError, match="a bug in a provider adapter"):
            await asyncio.wait_for(runner.run(), 10)

    snap = snapshot(db)
    assert snap.jobs["bug-005"]["state"] == "pending" and snap.jobs["bug-005"]["lease_token"] is None
    assert snap.states()["running"] == 0
    check_invariants(snap, server.stats(), ids=jobs, reference=None, stopped=True)
