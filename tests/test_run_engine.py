"""The runner's own stopping paths, in-process with engine options the CLI does not expose (a short grace).

The parts are wired as ``api.run`` wires them (settings -> providers, limits, prices) against the fake
server; only :class:`EngineOptions` differs, so a stop can be driven and timed from the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fake_server_fixtures import StartFakeServer
from run_helpers import check_invariants, prompts, settings_for, snapshot, write_manifest

from batchrunner import api
from batchrunner.config import Settings
from batchrunner.providers.registry import build_provider
from batchrunner.runner import EngineOptions, Runner, Wiring


@asynccontextmanager
async def engine(settings: Settings, manifest: Path, options: EngineOptions) -> AsyncIterator[Runner]:
    """A Runner for ``manifest``'s run, built as ``api.run`` builds it but with ``options``."""
    submitted = await api.submit(manifest, db=settings.run.db)
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
    report = await api.run(settings)
    assert report.exit_code == 0
    check_invariants(snapshot(db), server.stats(), ids=jobs, reference=None, in_flight_at_kills=2)
