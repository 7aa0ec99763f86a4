"""A provider batch's result line as its job's outcome (batchrunner.engine.batchlines), from a table."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from batchrunner.engine.batchlines import custom_id, job_id_of, line_outcome
from batchrunner.errors import PermanentError, ProviderError, RateLimited, TransientError
from batchrunner.models import BatchInfo, BatchState, JobState, Usage
from batchrunner.policy.pricing import BUILTIN_PRICES
from batchrunner.providers.base import ProviderResponse
from batchrunner.providers.batchapi import LineKind, LineOutcome

BATCH = BatchInfo(
    id=7, run_id=1, local_id="br0123456789ab", provider="openai", endpoint="/v1/chat/completions",
    model="gpt-4o-mini", state=BatchState.SUBMITTED, requests=3, size_bytes=1, remote_id="batch_x",
    created_at=datetime(2026, 12, 3, tzinfo=UTC),
)  # fmt: skip


def _line(kind: LineKind, error: ProviderError | None = None) -> LineOutcome:
    response = None
    if kind is LineKind.SUCCEEDED:
        usage = Usage(input_tokens=1000, output_tokens=500)
        response = ProviderResponse(output_text="ok", response_json="{}", usage=usage, request_id="req_1")
    return LineOutcome(
        custom_id=custom_id(BATCH, 42), kind=kind, response=response, error=error, raw_line="{}"
    )


def test_custom_ids_name_their_batch_and_job() -> None:
    assert custom_id(BATCH, 42) == "br0123456789ab-42"
    assert job_id_of(BATCH, "br0123456789ab-42") == 42
    assert job_id_of(BATCH, "brffffffffffff-42") is None  # another batch's line
    assert job_id_of(BATCH, "br0123456789ab-x") is None


@pytest.mark.parametrize(
    ("line", "attempt", "state", "refunded"),
    [
        (_line(LineKind.SUCCEEDED), 1, JobState.SUCCEEDED, False),
        # a permanent error fails the job at once
        (
            _line(LineKind.ERRORED, PermanentError("openai: HTTP 400: bad", status_code=400)),
            1,
            JobState.FAILED,
            False,
        ),
        # a retryable one inside a batch: back to pending, counted ...
        (
            _line(LineKind.ERRORED, TransientError("openai: HTTP 500", status_code=500)),
            1,
            JobState.PENDING,
            False,
        ),
        (
            _line(LineKind.ERRORED, RateLimited("openai: HTTP 429", status_code=429)),
            2,
            JobState.PENDING,
            False,
        ),
        # ... unless it was the job's last attempt
        (
            _line(LineKind.ERRORED, TransientError("openai: HTTP 500", status_code=500)),
            6,
            JobState.FAILED,
            False,
        ),
        # never run: back to pending with the attempt refunded
        (_line(LineKind.EXPIRED), 6, JobState.PENDING, True),
        (_line(LineKind.CANCELED), 1, JobState.PENDING, True),
    ],
)
def test_what_each_line_becomes(line: LineOutcome, attempt: int, state: JobState, refunded: bool) -> None:
    outcome, cost = line_outcome(
        BATCH, line, job_id=42, model="gpt-4o-mini", attempt=attempt, max_attempts=6, prices=BUILTIN_PRICES
    )
    assert (outcome.state, outcome.refund_attempt) == (state, refunded)
    assert outcome.lease.job_id == 42 and outcome.lease.token == BATCH.local_id  # fenced by the batch's lease
    assert outcome.attempt.number == attempt and outcome.attempt.runner_id == "batch:batch_x"
    if state is JobState.SUCCEEDED:
        # gpt-4o-mini at the batch price: 1,000 x 0.075 + 500 x 0.30 = 225 per 1M
        assert cost == Decimal("0.000225")
        assert outcome.result is not None and outcome.result.cost_usd == pytest.approx(0.000225)
        assert outcome.attempt.request_id == "req_1"
        assert outcome.result.batch_line == "{}"  # the provider's line, kept as received
    else:
        assert cost is None and outcome.result is None and outcome.error_class is not None
