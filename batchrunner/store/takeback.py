"""Taking running jobs back into the queue, knowing whether their request went out.

A running job is either *claimed* (leased, its request not sent yet) or *in flight* (``jobs.sent``: the
request went out, see ``Store.mark_sent``). When a runner dies, is cut off at its grace deadline or gives
its jobs back, the two are told apart:

- a claimed job was never sent: its attempt is refunded and it goes back to ``pending``; it costs
  nothing and nothing is counted against it. That is known when the runner gives it back itself, or
  from a dead runner's journal (batchrunner.engine.sendjournal); otherwise (a runner on another machine whose
  last marks may not have been written) the attempt keeps counting, as it may have been sent;
- an in-flight job may have reached the provider and been billed: its attempt keeps counting and is
  recorded in ``attempts`` as ``interrupted`` with ``possibly_billed`` set, then the job goes back to
  ``pending`` (or fails if that was its last attempt, so that a job which kills its runner every time
  does not loop forever).

In a cancelled run (``runs.cancelled_at``) a job taken back is ``cancelled`` instead of ``pending``.
``status`` counts "re-sent after interruption" from the ``interrupted`` rows followed by another send
(see store/insights.py), which is why a job that was only claimed must never leave such a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, Update, and_, case, exists, literal, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.models import JobState
from batchrunner.store.tables import attempts, jobs, runs

INTERRUPTED = "interrupted"
"""The error class of an attempt whose runner stopped while its request was in flight."""

INTERRUPTED_MESSAGE = "the runner stopped while this request was in flight (it may have been billed)"


def run_cancelled() -> ColumnElement[bool]:
    """The job's run has been cancelled (correlated to ``jobs``)."""
    return exists().where(runs.c.id == jobs.c.run_id, runs.c.cancelled_at.is_not(None))


def record_interrupted(where: ColumnElement[bool], now: datetime) -> Insert:
    """One ``interrupted`` attempt row for each in-flight job that ``where`` selects."""
    in_flight = select(
        jobs.c.id,
        jobs.c.attempts,
        jobs.c.lease_owner,
        jobs.c.updated_at,  # set when the request was marked sent
        literal(now, attempts.c.finished_at.type),
        literal(INTERRUPTED),
        literal(INTERRUPTED_MESSAGE),
        true(),
    ).where(where, jobs.c.state == JobState.RUNNING, jobs.c.sent.is_(True))
    columns = [
        "job_id", "number", "runner_id", "started_at", "finished_at", "error_class", "error_message",
        "possibly_billed",
    ]  # fmt: skip
    return attempts.insert().from_select(columns, in_flight)


def requeue(
    where: ColumnElement[bool], now: datetime, *, max_attempts: int | None, refund: ColumnElement[bool]
) -> Update:
    """Put the running jobs that ``where`` selects back in the queue (see the module docstring).

    ``max_attempts``: an in-flight job on its last attempt fails instead (None: never). ``refund``: the
    jobs not marked sent that are known not to have been sent (their runner says so, or its journal);
    any other job not marked sent keeps its attempt, since it may have been sent after all.
    """
    sent = jobs.c.sent.is_(True)
    exhausted: ColumnElement[bool] = (
        and_(sent, jobs.c.attempts >= max_attempts) if max_attempts is not None else literal(False)
    )
    cancelled = run_cancelled()
    state = case(
        (exhausted, JobState.FAILED.value),
        (cancelled, JobState.CANCELLED.value),
        else_=JobState.PENDING.value,
    )
    terminal = or_(exhausted, cancelled)
    values: dict[str, Any] = {
        "state": state,
        "attempts": case(
            (sent, jobs.c.attempts),
            (and_(refund, jobs.c.attempts > 0), jobs.c.attempts - 1),
            else_=jobs.c.attempts,
        ),
        "last_error_class": case((exhausted, INTERRUPTED), else_=jobs.c.last_error_class),
        "last_error": case(
            (exhausted, "attempts exhausted: the runner stopped during the last attempt"),
            else_=jobs.c.last_error,
        ),
        "finished_at": case((terminal, now), else_=None),
        "not_before": None,
        "sent": False,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
        "updated_at": now,
    }
    return update(jobs).where(where, jobs.c.state == JobState.RUNNING).values(values)


async def take_back(
    conn: AsyncConnection,
    where: ColumnElement[bool],
    now: datetime,
    *,
    max_attempts: int | None,
    refund: ColumnElement[bool],
) -> int:
    """Inside a write: record the in-flight ones, then requeue; returns how many jobs were taken back."""
    await conn.execute(record_interrupted(where, now))
    statement = requeue(where, now, max_attempts=max_attempts, refund=refund)
    return max((await conn.execute(statement)).rowcount, 0)


def owned_by(owners: Sequence[str]) -> ColumnElement[bool]:
    """Jobs leased to one of ``owners`` (none: no job)."""
    return jobs.c.lease_owner.in_(list(owners)) if owners else literal(False)
