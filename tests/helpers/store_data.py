"""Jobs, attempts and outcomes written straight through the :class:`Store` (no manifest, no runner), and
the rows read back, for the store's own tests and the engine parts that run on a real store.

- :func:`queue` puts ``count`` jobs ``job-1``... in a run; :func:`success` is an outcome for one of them;
- :func:`seed` writes a whole finished run (answers that a spreadsheet would run among them, see
  :data:`OUTPUTS`) for the export tests.
"""

from __future__ import annotations

import json
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


OUTPUTS = [  # formulas a spreadsheet would run, and plain numbers that are safe as they are
    "=1+2",
    "plain answer",
    "+cmd|' /C calc'!A0",
    "-5 degrees",
    "@SUM(A1)",
    "\tindented",
    'ok, "quoted"\n2',
    "-5",
    "-0.5",
    "+3",
    "-.5e-3",
    "-2.5E+10",
    "-1+2",
    "-5 ",
    "- 5",
    "-1e",
    "-",
    "-inf",
]


async def seed(
    db: str,
    outputs: list[str] = OUTPUTS,
    failed: int = 1,
    *,
    custom_ids: list[str] | None = None,
    metadata: list[dict[str, object]] | None = None,
) -> None:
    """A run whose jobs succeeded with ``outputs`` (in order), then ``failed`` permanently failed jobs.

    ids are ``id-001``... and metadata ``{"lang": "en", "n": N}`` unless given (one per job).
    """
    total = len(outputs) + failed
    ids = custom_ids or [f"id-{n:03d}" for n in range(1, total + 1)]
    metas = metadata or [{"lang": "en", "n": n} for n in range(1, total + 1)]
    specs = [
        JobSpec(
            custom_id=ids[n - 1],
            line_number=n,
            format=ManifestFormat.SIMPLE,
            provider="fake",
            endpoint=Endpoint.CHAT_COMPLETIONS,
            model="fake-model",
            request_json='{"model":"fake-model"}',
            metadata_json=json.dumps(metas[n - 1]),
        )
        for n in range(1, total + 1)
    ]
    store = await Store.open(db)
    try:
        async with store.bulk_insert("seeded", source="seed.jsonl") as inserter:
            await inserter.add(specs)
        run = await store.find_run("seeded")
        claimed = await store.claim(run.id, "seeder", len(specs), lease_seconds=60)
        now = datetime.now(UTC)
        outcomes = []
        for job in claimed:
            attempt = AttemptRecord(number=1, runner_id="seeder", started_at=now, finished_at=now)
            index = job.line_number - 1
            if index < len(outputs):
                result = ResultRecord(
                    output_text=outputs[index],
                    response_json='{"id":"r"}',
                    input_tokens=10,
                    output_tokens=5,
                    cached_tokens=2,
                    cost_usd=0.001,
                    latency_ms=12.5,
                )
                outcomes.append(
                    Outcome(lease=job.lease, attempt=attempt, state=JobState.SUCCEEDED, result=result)
                )
            else:
                outcomes.append(
                    Outcome(
                        lease=job.lease,
                        attempt=attempt,
                        state=JobState.FAILED,
                        error_class="permanent",
                        error="400 bad request",
                    )
                )
        await store.record_outcomes(outcomes)
    finally:
        await store.close()
