"""One line of a provider batch's results, as the outcome of its job's attempt (docs/batch.md "Results").

A line names its job by its custom_id, ``{local batch id}-{job id}`` (:func:`custom_id`), so results are
self-describing: a line of another batch, or of a job the batch no longer holds, is not this batch's to
write (and the store's lease fence would refuse it anyway). What each line becomes:

- **succeeded**: the job succeeds with the answer, its tokens and its cost at the batch price;
- **errored**: as a realtime error of the same class would: a permanent error fails the job; a retryable
  one (a 429 or 5xx inside the batch) sends it back to pending, or fails it on its last attempt;
- **expired** / **canceled**: the request never ran: back to pending with its attempt refunded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from batchrunner.engine.attempt import answered_records
from batchrunner.errors import PermanentError, RunStoppingError
from batchrunner.models import AttemptRecord, BatchInfo, JobState, Lease, Outcome
from batchrunner.policy.pricing import PriceTable
from batchrunner.providers.batchapi import LineKind, LineOutcome

__all__ = ["custom_id", "job_id_of", "line_outcome"]

MAX_ERROR_CHARS: Final = 2000
NOT_RUN: Final = {
    LineKind.EXPIRED: ("batch_expired", "the provider batch expired before this request ran"),
    LineKind.CANCELED: ("batch_cancelled", "the provider batch was cancelled before this request ran"),
}


def custom_id(batch: BatchInfo, job_id: int) -> str:
    """The custom_id of a job in a batch: ``{local_id}-{job_id}`` (Anthropic's ``[a-zA-Z0-9_-]{1,64}``)."""
    return f"{batch.local_id}-{job_id}"


def job_id_of(batch: BatchInfo, line_custom_id: str) -> int | None:
    """The job a result line names, if the line is this batch's."""
    prefix = f"{batch.local_id}-"
    if not line_custom_id.startswith(prefix):
        return None
    tail = line_custom_id[len(prefix) :]
    return int(tail) if tail.isdigit() else None


def line_outcome(
    batch: BatchInfo,
    line: LineOutcome,
    *,
    job_id: int,
    model: str | None,
    attempt: int,
    max_attempts: int,
    prices: PriceTable,
) -> tuple[Outcome, Decimal | None]:
    """The outcome of the job ``line`` answers, and its cost (``None``: unpriced, or no answer)."""
    lease = Lease(job_id=job_id, token=batch.local_id)
    now = datetime.now(UTC)
    started = batch.submitted_at or batch.created_at
    runner = f"batch:{batch.remote_id or batch.local_id}"
    if line.kind is LineKind.SUCCEEDED and line.response is not None:
        response = line.response
        cost = prices.cost(model or response.model, response.usage, batch=True)
        record, result = answered_records(
            number=attempt,
            runner_id=runner,
            started_at=started,
            response=response,
            cost=cost,
            latency_ms=None,  # a batch's line has no latency of its own
            batch_line=line.raw_line,
        )
        return Outcome(lease=lease, attempt=record, state=JobState.SUCCEEDED, result=result), cost
    if line.kind is LineKind.ERRORED and line.error is not None:
        error = line.error
        message = str(error)[:MAX_ERROR_CHARS]
        record = AttemptRecord(
            number=attempt,
            runner_id=runner,
            started_at=started,
            finished_at=now,
            status_code=error.status_code,
            error_class=error.error_class,
            error_message=message,
            request_id=error.request_id,
            error_body=error.error_body,
        )
        final = isinstance(error, PermanentError | RunStoppingError) or attempt >= max_attempts
        state = JobState.FAILED if final else JobState.PENDING
        outcome = Outcome(
            lease=lease, attempt=record, state=state, error_class=error.error_class, error=message
        )
        return outcome, None
    error_class, message = NOT_RUN.get(line.kind, ("batch_invalid_line", "the provider gave no answer"))
    record = AttemptRecord(
        number=attempt,
        runner_id=runner,
        started_at=started,
        finished_at=now,
        error_class=error_class,
        error_message=message,
    )
    outcome = Outcome(
        lease=lease,
        attempt=record,
        state=JobState.PENDING,
        error_class=error_class,
        error=message,
        refund_attempt=True,
    )
    return outcome, None
