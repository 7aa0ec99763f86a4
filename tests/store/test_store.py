"""The store contract, on a real SQLite file (and PostgreSQL when BATCHRUNNER_TEST_PG_URL is set)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers.database import undo_run_counters
from helpers.store_data import attempt, live_runners, queue, spec, states, success
from sqlalchemy import select, text

from batchrunner.models import AttemptRecord, JobState, Outcome, ResultRecord
from batchrunner.providers.streaming import pack_events
from batchrunner.store import tables
from batchrunner.store.database import SQLITE_PRAGMAS
from batchrunner.store.store import Store


async def take_back_from(store: Store, run_id: int, owner: str, max_attempts: int = 6) -> int:
    """Another runner judges ``owner`` dead (its process gone) and takes its jobs back."""
    await store.register_runner(runner_id=owner, host="here", pid=404, run_id=run_id)
    taken, _ = await store.take_back_from_dead(
        run_id, max_attempts, host="here", is_alive=lambda pid: pid != 404, stale_after_s=60
    )
    return taken


async def test_claim_leases_in_order_and_counts_the_attempt(store: Store) -> None:
    run_id = await queue(store, 5)
    claimed = await store.claim(run_id, "runner-a", 3, lease_seconds=60)
    assert [job.custom_id for job in claimed] == ["job-1", "job-2", "job-3"]
    assert all(job.attempt == 1 for job in claimed)
    again = await store.claim(run_id, "runner-b", 10, lease_seconds=60)
    assert [job.custom_id for job in again] == ["job-4", "job-5"]
    assert await store.claim(run_id, "runner-c", 10, lease_seconds=60) == []
    assert set((await states(store)).values()) == {"running"}


async def test_a_stale_lease_token_changes_nothing(store: Store) -> None:
    run_id = await queue(store, 1)
    [first] = await store.claim(run_id, "sleepy", 1, lease_seconds=0.01)
    assert await store.mark_sent([first.lease]) == {first.lease.job_id}
    # The lease lapses; another runner takes the job back and claims it again.
    assert await take_back_from(store, run_id, "sleepy") == 1
    [second] = await store.claim(run_id, "awake", 1, lease_seconds=60)
    assert second.attempt == 2 and second.lease.token != first.lease.token

    assert await store.record_outcomes([success(first.lease)]) == set()
    assert await store.mark_sent([first.lease]) == set()
    assert await store.release([first.lease]) == 0
    assert (await states(store)) == {"job-1": "running"}
    async with store.db.read() as conn:
        assert (await conn.execute(select(tables.results))).all() == []

    assert await store.record_outcomes([success(second.lease, 2)]) == {second.lease.job_id}
    assert (await states(store)) == {"job-1": "succeeded"}


async def test_the_fence_waits_for_a_concurrent_writer_instead_of_skipping_the_row(store: Store) -> None:
    # A heartbeat renewing this runner's leases holds their rows locked for a moment. A checkpoint that
    # arrives meanwhile must wait and record the answer: skipping locked rows (SKIP LOCKED) would drop
    # it as "lease lost" and leave the job running forever under a live runner.
    run_id = await queue(store, 1)
    [job] = await store.claim(run_id, "runner-a", 1, lease_seconds=60)
    locked = asyncio.Event()

    async def heartbeat_like_writer() -> None:
        async with store.db.write() as conn:
            await conn.execute(
                tables.jobs.update().where(tables.jobs.c.id == job.lease.job_id).values(attempts=job.attempt)
            )
            locked.set()
            await asyncio.sleep(0.3)

    writer = asyncio.create_task(heartbeat_like_writer())
    await locked.wait()
    accepted = await store.record_outcomes([success(job.lease)])
    await writer
    assert accepted == {job.lease.job_id}
    assert (await states(store)) == {"job-1": "succeeded"}


async def test_complete_writes_result_and_attempt_once(store: Store) -> None:
    run_id = await queue(store, 2)
    claimed = await store.claim(run_id, "me", 2, lease_seconds=60)
    accepted = await store.record_outcomes([success(job.lease) for job in claimed])
    assert accepted == {job.lease.job_id for job in claimed}
    # Writing the same outcome again is fenced off: the job is no longer running under that lease.
    assert await store.record_outcomes([success(claimed[0].lease)]) == set()
    async with store.db.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM results"))).scalar() == 2
        assert (await conn.execute(text("SELECT count(*) FROM attempts"))).scalar() == 2
    stats = await store.stats(await store.find_run("r"))
    assert stats.by_state["succeeded"] == 2 and stats.input_tokens == 6 and stats.output_tokens == 4


async def test_fail_with_retry_then_permanent(store: Store) -> None:
    run_id = await queue(store, 1)
    [job] = await store.claim(run_id, "me", 1, lease_seconds=60)
    later = datetime.now(UTC) + timedelta(hours=1)
    retry = Outcome(
        lease=job.lease,
        attempt=attempt(1, "transient"),
        state=JobState.PENDING,
        not_before=later,
        error_class="transient",
        error="500",
    )
    assert await store.record_outcomes([retry]) == {job.lease.job_id}
    assert await store.claim(run_id, "me", 1, lease_seconds=60) == []  # held back until not_before

    async with store.db.write() as conn:
        await conn.execute(tables.jobs.update().values(not_before=datetime.now(UTC) - timedelta(seconds=1)))
    [job] = await store.claim(run_id, "me", 1, lease_seconds=60)
    assert job.attempt == 2
    final = Outcome(
        lease=job.lease,
        attempt=attempt(2, "permanent"),
        state=JobState.FAILED,
        error_class="permanent",
        error="400",
    )
    await store.record_outcomes([final])
    stats = await store.stats(await store.find_run("r"))
    assert stats.by_state["failed"] == 1
    assert stats.attempts == 2
    assert stats.top_errors == [("permanent", 1), ("transient", 1)]


async def test_release_refunds_the_attempt(store: Store) -> None:
    run_id = await queue(store, 2)
    claimed = await store.claim(run_id, "me", 2, lease_seconds=60)
    assert await store.release([job.lease for job in claimed]) == 2
    again = await store.claim(run_id, "me", 2, lease_seconds=60)
    assert [job.attempt for job in again] == [1, 1]


async def test_reclaim_fails_jobs_that_used_up_their_attempts(store: Store) -> None:
    run_id = await queue(store, 2)
    for n in range(2):  # sent each time (a job that kills its runner), so each attempt counts
        claimed = await store.claim(run_id, f"crashy-{n}", 2, lease_seconds=60)
        await store.mark_sent([job.lease for job in claimed])
        assert await take_back_from(store, run_id, f"crashy-{n}", max_attempts=2) == 2
    assert set((await states(store)).values()) == {"failed"}
    # A live lease of someone else is not touched.
    await store.retry_failed(run_id)
    await store.register_runner(runner_id="alive", host="here", pid=1, run_id=run_id)
    await store.claim(run_id, "alive", 2, lease_seconds=60)
    assert await store.take_back_from_dead(
        run_id, 6, host="here", is_alive=lambda _pid: True, stale_after_s=60
    ) == (0, [])


async def test_retry_failed_and_cancel(store: Store) -> None:
    run_id = await queue(store, 3)
    [job] = await store.claim(run_id, "me", 1, lease_seconds=60)
    await store.record_outcomes(
        [Outcome(lease=job.lease, attempt=attempt(1), state=JobState.FAILED, error="x")]
    )
    assert await store.retry_failed(run_id) == 1
    assert (await states(store))["job-1"] == "pending"
    [job] = await store.claim(run_id, "me", 1, lease_seconds=60)
    assert job.attempt == 1  # fresh attempts after a retry
    assert await store.cancel(run_id, host="h", is_alive=lambda _pid: True, stale_after_s=30) == 2
    assert (await states(store)) == {"job-1": "running", "job-2": "cancelled", "job-3": "cancelled"}
    # the job held by a runner (not known dead) is its to give back, or to finish: its answer counts
    assert await store.record_outcomes([success(job.lease)]) == {job.lease.job_id}
    assert (await states(store))["job-1"] == "succeeded"


async def test_resubmit_is_idempotent_and_conflicts_are_counted(store: Store) -> None:
    await queue(store, 3)
    async with store.bulk_insert("r", source="test") as inserter:
        await inserter.add([spec(1), spec(2), spec(3), spec(4)])
    assert (inserter.inserted, inserter.already_present, inserter.conflicts) == (1, 3, 0)
    async with store.bulk_insert("r", source="test") as inserter:
        await inserter.add([spec(1, '{"model":"other"}'), spec(2)])
    assert (inserter.inserted, inserter.already_present, inserter.conflicts) == (0, 1, 1)
    assert inserter.conflicting_ids == ["job-1"]


async def test_a_failed_bulk_insert_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.bulk_insert("r", source="test") as inserter:
            await inserter.add([spec(1), spec(2)])
            raise RuntimeError("invalid line found later")
    assert await store.list_runs() == []


async def test_runs_are_listed_and_the_latest_is_the_default(store: Store) -> None:
    await queue(store, 2, run="first")
    await queue(store, 1, run="second")
    assert [(run.name, run.jobs) for run in await store.list_runs()] == [("first", 2), ("second", 1)]
    assert (await store.find_run(None)).name == "second"


async def test_sqlite_pragmas_on_every_connection(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "p.db"))
    try:
        for engine in (store.db.writer, store.db.reader):
            async with engine.connect() as conn:
                for name, expected in SQLITE_PRAGMAS.items():
                    value = (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                    assert str(value).lower() == {"FULL": "2", "ON": "1"}.get(expected, expected).lower(), (
                        name
                    )
    finally:
        await store.close()


async def test_sqlite_writes_begin_immediate(tmp_path: Path) -> None:
    """A write transaction takes the write lock at BEGIN: a second writer cannot start one meanwhile."""
    store = await Store.open(str(tmp_path / "lock.db"))
    try:
        async with store.db.write():
            other = sqlite3.connect(tmp_path / "lock.db", timeout=0, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
    finally:
        await store.close()


async def test_database_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    store = await Store.open(str(path))
    try:
        await queue(store, 1)
        files = [tmp_path / name for name in os.listdir(tmp_path) if name.startswith("private.db")]
        assert {p.name for p in files} >= {"private.db", "private.db-wal", "private.db-shm"}
        for file in files:
            assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file.name
    finally:
        await store.close()


async def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    for _ in range(2):
        store = await Store.open(str(tmp_path / "m.db"))
        async with store.db.read() as conn:
            names = (await conn.execute(select(tables.schema_migrations.c.name))).scalars().all()
        await store.close()
    assert names == [
        "0001_initial", "0002_runner_limits", "0003_provider_pauses", "0004_run_record",
        "0005_attempt_error_body", "0006_streamed_answers", "0007_provider_batches",
        "0008_latency_histograms", "0009_run_counters", "0010_leased_jobs_index",
    ]  # fmt: skip


async def test_an_older_database_gains_the_attempt_error_body(db_target: str) -> None:
    """0005 adds ``attempts.error_body`` to a database made before it; its attempts keep their rows."""
    store = await Store.open(db_target)
    try:
        run_id = await queue(store, 2)
        old, new = await store.claim(run_id, "me", 2, lease_seconds=60)
        await store.record_outcomes([success(old.lease)])
        async with store.db.write() as conn:  # as the database was before 0005
            await conn.execute(text("ALTER TABLE attempts DROP COLUMN error_body"))
            await conn.execute(
                tables.schema_migrations.delete().where(
                    tables.schema_migrations.c.name == "0005_attempt_error_body"
                )
            )
    finally:
        await store.close()
    store = await Store.open(db_target)
    try:
        body = '{"error": {"message": "Invalid request.", "type": "invalid_request_error"}}'
        failed = Outcome(
            lease=new.lease,
            attempt=AttemptRecord(
                number=1, runner_id="me", started_at=datetime.now(UTC), status_code=400, error_body=body
            ),
            state=JobState.FAILED,
            error_class="permanent",
            error="openai: HTTP 400: Invalid request.",
        )
        await store.record_outcomes([failed])
        async with store.db.read() as conn:
            rows = await conn.execute(
                select(tables.attempts.c.job_id, tables.attempts.c.error_body).order_by(tables.attempts.c.id)
            )
            assert [tuple(row) for row in rows] == [(old.lease.job_id, None), (new.lease.job_id, body)]
    finally:
        await store.close()


async def test_an_older_database_gains_the_streamed_answer_columns(db_target: str) -> None:
    """0006 adds ``ttft_ms`` (attempts, results) and ``stream_events`` (results); old rows keep theirs."""
    store = await Store.open(db_target)
    try:
        run_id = await queue(store, 2)
        old, new = await store.claim(run_id, "me", 2, lease_seconds=60)
        await store.record_outcomes([success(old.lease)])
        async with store.db.write() as conn:  # as the database was before 0006
            for table, column in (
                ("attempts", "ttft_ms"),
                ("results", "ttft_ms"),
                ("results", "stream_events"),
            ):
                await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
            await conn.execute(
                tables.schema_migrations.delete().where(
                    tables.schema_migrations.c.name == "0006_streamed_answers"
                )
            )
    finally:
        await store.close()
    store = await Store.open(db_target)
    try:
        packed = pack_events(['{"type":"message_stop"}'])
        streamed = Outcome(
            lease=new.lease,
            attempt=AttemptRecord(number=1, runner_id="me", started_at=datetime.now(UTC), ttft_ms=12.5),
            state=JobState.SUCCEEDED,
            result=ResultRecord(output_text="hi", response_json="{}", ttft_ms=12.5, stream_events=packed),
        )
        await store.record_outcomes([streamed])
        async with store.db.read() as conn:
            attempts = await conn.execute(select(tables.attempts.c.ttft_ms).order_by(tables.attempts.c.id))
            assert list(attempts.scalars()) == [None, 12.5]
            results = tables.results
            kept = await conn.execute(
                select(results.c.ttft_ms, results.c.stream_events).order_by(results.c.job_id)
            )
            assert [tuple(row) for row in kept] == [(None, None), (12.5, packed)]
    finally:
        await store.close()


async def test_heartbeat_renews_only_this_runners_leases(store: Store) -> None:
    run_id = await queue(store, 2)
    await store.register_runner(runner_id="a", host="h", pid=1, run_id=run_id)
    [mine] = await store.claim(run_id, "a", 1, lease_seconds=1)
    [theirs] = await store.claim(run_id, "b", 1, lease_seconds=1)
    assert await store.heartbeat("a", lease_seconds=3600) == {mine.lease}
    async with store.db.read() as conn:
        rows = await conn.execute(select(tables.jobs.c.lease_owner, tables.jobs.c.lease_expires_at))
        expiry = {owner: expires for owner, expires in rows}
    assert expiry["a"] - expiry["b"] > timedelta(minutes=50)
    assert mine.lease.token != theirs.lease.token


async def test_dead_runners_are_found_by_pid_here_or_by_a_lapsed_heartbeat(store: Store) -> None:
    run_id = await queue(store, 3)
    for runner_id, host, pid in [("alive", "here", 10), ("dead-pid", "here", 11), ("elsewhere", "there", 11)]:
        await store.register_runner(runner_id=runner_id, host=host, pid=pid, run_id=run_id)
        await store.claim(run_id, runner_id, 1, lease_seconds=3600)
    alive_pids = {10}

    async def take_back(stale_after_s: float) -> tuple[int, list[str]]:
        return await store.take_back_from_dead(
            run_id, 6, host="here", is_alive=alive_pids.__contains__, stale_after_s=stale_after_s
        )

    # The dead runner's job comes back at once, lease or not; a pid on another host is not ours to judge.
    assert await take_back(60) == (1, ["dead-pid"])
    assert await live_runners(store, run_id) == ["alive", "elsewhere"]
    taken, dead = await take_back(-1)  # every heartbeat lapsed
    assert (taken, sorted(dead)) == (2, ["alive", "elsewhere"])
    assert await live_runners(store, run_id) == []


async def test_a_runner_whose_heartbeat_lands_first_keeps_its_jobs(store: Store) -> None:
    run_id = await queue(store, 2)
    await store.register_runner(runner_id="frozen", host="there", pid=1, run_id=run_id)
    claimed = await store.claim(run_id, "frozen", 2, lease_seconds=3600)
    async with store.db.write() as conn:  # it was frozen for a minute ...
        await conn.execute(
            tables.runners.update().values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    # ... and beats again before anyone judged it: alive, with both jobs still its own
    assert await store.heartbeat("frozen", lease_seconds=3600) == {job.lease for job in claimed}
    assert await store.take_back_from_dead(run_id, 6, host="here", is_alive=bool, stale_after_s=30) == (0, [])
    assert set((await states(store)).values()) == {"running"}


async def test_pauses_are_shared_by_the_runners_of_a_run(store: Store) -> None:
    run_id = await queue(store, 1)
    assert await store.active_pauses(run_id) == {}
    await store.publish_pause(run_id, "openai", 30)
    await store.publish_pause(run_id, "openai", 5)  # an earlier end does not shorten the pause
    await store.publish_pause(run_id, "anthropic", 0.001)
    await asyncio.sleep(0.01)
    pauses = await store.active_pauses(run_id)
    assert list(pauses) == ["openai"] and 25 < pauses["openai"] <= 30
    await store.publish_pause(run_id, "openai", 60)
    assert 55 < (await store.active_pauses(run_id))["openai"] <= 60


async def test_busy_runners_are_the_live_ones_holding_jobs(store: Store) -> None:
    run_id = await queue(store, 4)
    for runner_id in ("c", "a", "b", "idle"):
        await store.register_runner(runner_id=runner_id, host="h", pid=1, run_id=run_id)
    await store.claim(run_id, "c", 1, lease_seconds=60)
    [a_job] = await store.claim(run_id, "a", 1, lease_seconds=60)
    await store.claim(run_id, "b", 2, lease_seconds=60)  # two jobs, one runner

    async def busy() -> list[str]:
        return await store.busy_runners(run_id, stale_after_s=30)

    assert await busy() == ["a", "b", "c"]  # in id order; not "idle", which holds no job
    assert await store.busy_runners(run_id, stale_after_s=-1) == []  # heartbeats lapsed
    assert await store.record_outcomes([success(a_job.lease)]) == {a_job.lease.job_id}
    assert await busy() == ["b", "c"]  # a ran dry: its part goes to the others
    await store.mark_stopped(["b"])
    assert await busy() == ["c"]  # stopped, even if it still holds jobs


async def test_a_stopped_runner_still_holding_jobs_is_judged_like_a_live_one(store: Store) -> None:
    run_id = await queue(store, 2)
    for runner_id, host, pid in [("gone", "here", 11), ("clean", "here", 12), ("far", "there", 13)]:
        await store.register_runner(runner_id=runner_id, host=host, pid=pid, run_id=run_id)
    await store.claim(run_id, "gone", 1, lease_seconds=3600)
    await store.claim(run_id, "far", 1, lease_seconds=3600)
    await store.mark_stopped(["gone", "clean", "far"])  # stopped, but two of them left a job running

    async def take_back(stale_after_s: float) -> tuple[int, list[str]]:
        return await store.take_back_from_dead(
            run_id, 6, host="here", is_alive=lambda pid: False, stale_after_s=stale_after_s
        )

    # Its process is gone here: its job comes back at once (not when its lease expires, an hour on).
    # "clean" holds nothing and is not listed: stopped runners do not pile up in every check.
    assert await take_back(60) == (1, ["gone"])
    assert await take_back(-1) == (1, ["far"])  # on another host: once its heartbeat lapsed
    assert await take_back(-1) == (0, [])


async def test_an_older_database_gains_the_batches_table_and_jobs_batch_id(db_target: str) -> None:
    """0007 adds ``batches`` and ``jobs.batch_id`` to a database made before it; its jobs keep their rows."""
    store = await Store.open(db_target)
    try:
        run_id = await queue(store, 2)
        async with store.db.write() as conn:  # as the database was before 0007
            await undo_run_counters(conn)
            await conn.execute(text("DROP INDEX ix_jobs_batch"))
            await conn.execute(text("ALTER TABLE jobs DROP COLUMN batch_id"))
            await conn.execute(text("DROP TABLE batches"))
            await conn.execute(text("ALTER TABLE results DROP COLUMN batch_line"))
            await conn.execute(
                tables.schema_migrations.delete().where(
                    tables.schema_migrations.c.name == "0007_provider_batches"
                )
            )
    finally:
        await store.close()
    store = await Store.open(db_target)
    try:
        page = await store.pending_page(run_id, ("fake", "/v1/chat/completions", "m"), 0, 10, any_model=False)
        assert len(page) == 2
        batch = await store.form_batch(
            run_id, local_id="brold", provider="fake", endpoint="/v1/chat/completions", model="m",
            job_ids=[int(row[0]) for row in page], size_bytes=10,
        )  # fmt: skip
        assert batch is not None and batch.requests == 2
    finally:
        await store.close()


async def test_an_older_database_gains_histograms_of_its_recorded_latencies(db_target: str) -> None:
    """0008 counts the attempts already recorded into ``latencies``; status's percentiles then see them."""
    store = await Store.open(db_target)
    try:
        run_id = await queue(store, 3)
        claimed = await store.claim(run_id, "me", 3, lease_seconds=60)
        timed = [
            replace(success(job.lease), attempt=replace(attempt(1), latency_ms=ms, ttft_ms=ttft))
            for job, ms, ttft in zip(claimed, (10.0, 20.0, 400.0), (None, 5.0, None), strict=True)
        ]
        await store.record_outcomes(timed)
        async with store.db.write() as conn:  # as the database was before 0008
            await conn.execute(text("DROP TABLE latencies"))
            await conn.execute(
                tables.schema_migrations.delete().where(
                    tables.schema_migrations.c.name == "0008_latency_histograms"
                )
            )
    finally:
        await store.close()
    store = await Store.open(db_target)
    try:
        figures = await store.timing(await store.find_run("r"))
        assert figures.latency_run is not None and figures.latency_run.count == 3
        assert 400.0 <= figures.latency_run.p99 <= 420.0 and 10.0 <= figures.latency_run.p50 <= 21.0
        assert figures.ttft_run is not None and figures.ttft_run.count == 1
    finally:
        await store.close()
