"""Jobs, attempts and outcomes written straight through the :class:`Store` (no manifest, no runner), and
the rows read back, for the store's own tests and the engine parts that run on a real store."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from batchrunner.models import (
    AttemptRecord,
    Endpoint,
    JobSpec,
    JobState,
    Lease,
    ManifestFormat,
    Outcome,
    ResultRecord,
)
from batchrunner.store import tables
from batchrunner.store.store import Store


def spec(n: int, body: str = '{"model":"m","messages":[]}') -> JobSpec:
    return JobSpec(
        custom_id=f"job-{n}",
        line_number=n,
        format=ManifestFormat.SIMPLE,
        provider="fake",
        endpoint=Endpoint.CHAT_COMPLETIONS,
        model="m",
        request_json=body,
    )


async def queue(store: Store, count: int, run: str = "r") -> int:
    async with store.bulk_insert(run, source="test") as inserter:
        await inserter.add([spec(n) for n in range(1, count + 1)])
    return (await store.find_run(run)).id


def attempt(number: int, error_class: str | None = None) -> AttemptRecord:
    now = datetime.now(UTC)
    return AttemptRecord(
        number=number,
        runner_id="me",
        started_at=now,
        finished_at=now,
        status_code=200,
        error_class=error_class,
    )


def success(lease: Lease, number: int = 1) -> Outcome:
    return Outcome(
        lease=lease,
        attempt=attempt(number),
        state=JobState.SUCCEEDED,
        result=ResultRecord(output_text="ok", response_json="{}", input_tokens=3, output_tokens=2),
    )


async def live_runners(store: Store, run_id: int) -> list[str]:
    """The runners of the run not marked stopped, in the order they started."""
    query = (
        select(tables.runners.c.id)
        .where(tables.runners.c.run_id == run_id, tables.runners.c.stopped_at.is_(None))
        .order_by(tables.runners.c.started_at, tables.runners.c.id)
    )
    async with store.db.read() as conn:
        return list((await conn.execute(query)).scalars())


async def states(store: Store) -> dict[str, str]:
    async with store.db.read() as conn:
        rows = await conn.execute(
            select(tables.jobs.c.custom_id, tables.jobs.c.state).order_by(tables.jobs.c.id)
        )
        return {custom_id: state for custom_id, state in rows}
