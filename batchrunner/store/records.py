"""Values that cross the store's interface: leases, attempt and result records, outcomes and stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from batchrunner.models import JobState


@dataclass(frozen=True, kw_only=True, slots=True)
class Lease:
    """Proof that this runner owns a running job; every write-back is fenced by it."""

    job_id: int
    token: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimedJob:
    """A job moved to ``running`` by a claim, with what is needed to send it."""

    lease: Lease
    custom_id: str
    line_number: int
    provider: str
    endpoint: str
    model: str | None
    request_json: str
    attempt: int
    """The number of this attempt (1 for the first); counted by the claim itself."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptRecord:
    """One try at one job, as recorded in the ``attempts`` table."""

    number: int
    runner_id: str | None
    started_at: datetime
    finished_at: datetime | None = None
    status_code: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    possibly_billed: bool = False
    request_id: str | None = None
    error_body: str | None = None
    """The provider's HTTP error answer as JSON text, ``{"error": {...}}`` (None: none came)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultRecord:
    """The answer of a succeeded job."""

    output_text: str | None
    response_json: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """What became of one attempt: the job's next state, written back under its lease in one group."""

    lease: Lease
    attempt: AttemptRecord
    state: JobState
    """SUCCEEDED (with ``result``), PENDING (retry at ``not_before``) or FAILED."""
    result: ResultRecord | None = None
    not_before: datetime | None = None
    error_class: str | None = None
    error: str | None = None
    refund_attempt: bool = False
    """The attempt does not count against the job (a run-stopping error: every job would fail alike)."""
    failure_class: str | None = None
    """A permanent failure's HTTP status and error type, by which the runner spots failures shared by
    every job (:mod:`batchrunner.systematic`); not stored."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunStats:
    """Aggregates of one run, for ``status``."""

    run: str
    total: int
    by_state: dict[str, int]
    """Jobs by state, and ``claimed`` apart from ``running`` (in flight): see store/reports.py."""
    attempts: int
    """Requests sent over the run's life (recorded attempts and those in flight); it never decreases."""
    attempts_this_try: int
    """The jobs' attempts since they were last queued afresh (``retry --failed`` starts them at 0)."""
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    """The summed cost of the priced results (see ``cost_known``)."""
    priced_results: int
    unpriced_results: int
    """Results of models without a price: while there are any, the run's cost is unknown."""
    first_activity: datetime | None
    last_activity: datetime | None
    top_errors: list[tuple[str, int]] = field(default_factory=list)

    @property
    def cost_known(self) -> bool:
        return self.unpriced_results == 0


class ExportRow(NamedTuple):
    """One job with its result (if any), in manifest order.

    A NamedTuple rather than a frozen dataclass: an export builds a million of these straight from
    driver rows (``ExportRow._make``), and that is a third of the time a dataclass takes (measured).
    """

    job_id: int
    custom_id: str
    state: str
    provider: str
    endpoint: str
    model: str | None
    request_json: str
    metadata_json: str | None
    attempts: int
    error_class: str | None
    error: str | None
    output_text: str | None
    response_json: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    cost_usd: float | None
    latency_ms: float | None
    status_code: int | None
    """Of the job's last attempt (None: no attempt, or no HTTP answer); so are the next two."""
    request_id: str | None
    error_body: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueState:
    """What is left of a run's queue."""

    pending: int
    held_back: int
    """Pending jobs whose ``not_before`` (a backoff) is still in the future."""
    next_due_at: datetime | None
    running: int
