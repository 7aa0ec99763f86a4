"""Frozen values that every layer shares: job specs, job states, usage and results, and the values that
cross the store's interface (leases, attempt and result records, outcomes, stats)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple


class JobState(StrEnum):
    """Where a job is in its life (docs/design.md "Job life")."""

    PENDING = "pending"
    """Waiting to be claimed; ``not_before`` may hold it back for a backoff."""
    RUNNING = "running"
    """Leased to one runner until ``lease_expires_at``."""
    SUCCEEDED = "succeeded"
    """Answered; its result is checkpointed."""
    FAILED = "failed"
    """A permanent error, or attempts exhausted."""
    CANCELLED = "cancelled"
    """Cancelled by the user before it finished."""

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class BatchState(StrEnum):
    """Where a provider batch is in its life (docs/batch.md "A batch's life")."""

    PREPARING = "preparing"
    """Its row and its jobs are committed; nothing the provider made is known yet."""
    UPLOADED = "uploaded"
    """OpenAI: its input file is uploaded (``file_id``); the batch is not known to be created."""
    SUBMITTED = "submitted"
    """The provider has it (``remote_id``); polled until it ends."""
    DONE = "done"
    """Ended and every line recorded; jobs without a line went back to pending."""
    FAILED = "failed"
    """The provider refused it as a whole (validation); its jobs failed with the reason."""

    @property
    def is_live(self) -> bool:
        return self in (BatchState.PREPARING, BatchState.UPLOADED, BatchState.SUBMITTED)


class ManifestFormat(StrEnum):
    """The manifest line formats of docs/design.md "Manifest formats", detected per line."""

    OPENAI_BATCH = "openai-batch"
    ANTHROPIC_BATCH = "anthropic-batch"
    SIMPLE = "simple"


class Endpoint(StrEnum):
    """The API endpoints a job can call."""

    CHAT_COMPLETIONS = "/v1/chat/completions"
    EMBEDDINGS = "/v1/embeddings"
    RESPONSES = "/v1/responses"
    MESSAGES = "/v1/messages"


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """One validated manifest line, ready to be queued.

    The request body and metadata are kept as JSON text: they are serialised once, at the edge, and
    stored and hashed as they are (a million-line submit must not serialise twice).
    """

    custom_id: str
    line_number: int
    format: ManifestFormat
    provider: str
    endpoint: Endpoint
    model: str | None
    request_json: str
    metadata_json: str | None = None
    prompt_tokens: int = 0
    """The offline estimate of its input tokens (``policy.tokens``), made while the line was parsed."""
    output_tokens: int = 0
    """Its output cap (``max_tokens``, or the default cap), for the estimate."""

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.request_json)
        return body

    @property
    def metadata(self) -> dict[str, Any] | None:
        if self.metadata_json is None:
            return None
        metadata: dict[str, Any] = json.loads(self.metadata_json)
        return metadata


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Tokens one call consumed, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    """Input tokens read from the provider's prompt cache (a subset of ``input_tokens``)."""
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (a subset of ``input_tokens``; Anthropic reports them and
    bills them above the input price). Priced, not stored: the stored cost already includes them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitInfo:
    """What the provider's rate-limit headers said about its limits and the remaining budget (None: not
    reported)."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None
    limit_requests: int | None = None
    """The requests per minute the provider advertises for this key (``x-ratelimit-limit-requests``)."""
    limit_tokens: int | None = None
    """The tokens per minute it advertises, counted as prompt + output (``x-ratelimit-limit-tokens``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInfo:
    """A run: a named set of jobs in one database."""

    id: int
    name: str
    created_at: datetime
    source: str | None
    jobs: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    """How the manifest was submitted (``provider``, ``model``, ``skip_invalid``)."""
    settings: dict[str, Any] | None = None
    """How the run is run, as remembered by its first ``run`` (batchrunner.config.runsettings);
    None: not yet."""
    last_used_at: datetime | None = None
    cancelled_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SubmitReport:
    """What one ``submit`` did."""

    run: str
    file: str
    lines: int
    inserted: int
    already_present: int
    rejected: int
    rejects_file: str | None = None


# Values that cross the store's interface (the engine's and the reports').
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
    ttft_ms: float | None = None
    """Time to first token of a streamed answer (docs/streaming.md); None when not streamed."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    possibly_billed: bool = False
    request_id: str | None = None
    error_body: str | None = None
    """The provider's HTTP error answer as JSON text, ``{"error": {...}}`` (None: none came)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptRow:
    """One recorded attempt with its job's id, as ``batchrunner attempts`` shows it."""

    custom_id: str
    provider: str
    model: str | None
    number: int
    runner_id: str | None
    started_at: datetime
    finished_at: datetime | None
    status_code: int | None
    error_class: str | None
    error_message: str | None
    """Redacted when it was recorded, as every stored message is."""
    latency_ms: float | None
    ttft_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    possibly_billed: bool
    request_id: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultRecord:
    """The answer of a succeeded job."""

    output_text: str | None
    response_json: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    """Input tokens read from the provider's prompt cache (a subset of ``input_tokens``)."""
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    """Time to first token of a streamed answer; None when not streamed."""
    stream_events: bytes | None = None
    """A streamed answer's raw events, zlib-packed (docs/streaming.md); None when not streamed."""
    batch_line: str | None = None
    """The provider batch's result line as received (docs/batch.md "Results"); None in real time."""


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
    every job (:mod:`batchrunner.engine.systematic`); not stored."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchInfo:
    """A provider batch as the store records it (``batches``)."""

    id: int
    run_id: int
    local_id: str
    """batchrunner's own id for it: in the OpenAI metadata, the upload's name and every custom_id."""
    provider: str
    endpoint: str
    model: str | None
    """OpenAI batches hold one model; ``None`` for Anthropic's, which may mix them."""
    state: BatchState
    requests: int
    size_bytes: int
    file_id: str | None = None
    remote_id: str | None = None
    remote_status: str | None = None
    """The provider's own word for its state, at the last poll."""
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    canceled: int = 0
    created_at: datetime
    submitted_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchesSummary:
    """A run's provider batches as ``status`` shows them, and what was paid at batch price."""

    batches: list[BatchInfo] = field(default_factory=list)
    """Every batch of the run, oldest first."""
    batch_results: int = 0
    """Results of jobs a provider batch answered (``jobs.batch_id`` set)."""
    batch_cost_usd: float = 0.0
    """Their summed cost (at the provider's batch price)."""
    all_results: int = 0
    all_cost_usd: float = 0.0

    @property
    def live(self) -> list[BatchInfo]:
        return [batch for batch in self.batches if batch.state.is_live]

    @property
    def cost_share(self) -> float | None:
        """The share of the run's cost paid at batch price (None: nothing costed yet)."""
        return self.batch_cost_usd / self.all_cost_usd if self.all_cost_usd > 0 else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Percentiles:
    """p50/p95/p99 of some latencies, in milliseconds, and how many were counted."""

    p50: float
    p95: float
    p99: float
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TimingFigures:
    """``status``'s timing: percentiles over the run and over the last minute (both from histograms, so
    within 5% and never below: policy/histogram.py), and the last minute's throughput. ``None``: nothing
    timed."""

    latency_run: Percentiles | None = None
    latency_last_minute: Percentiles | None = None
    ttft_run: Percentiles | None = None
    """Time to first token, for streamed requests only."""
    ttft_last_minute: Percentiles | None = None
    answered_last_minute: int = 0
    """Attempts answered (no error) in the last 60 s."""
    attempts_last_minute: int = 0

    @property
    def throughput_last_minute_per_s(self) -> float:
        return self.answered_last_minute / 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RunStats:
    """Aggregates of one run, for ``status``."""

    run: str
    total: int
    by_state: dict[str, int]
    """Jobs by state, with ``claimed`` (held by a runner, not sent) and ``batched`` (held by a live provider
    batch) apart from ``running`` (in flight): see store/reports.py."""
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
    ttft_ms: float | None
    status_code: int | None
    """Of the job's last attempt (None: no attempt, or no HTTP answer); so are the next two."""
    request_id: str | None
    error_body: str | None
    served_by: str | None = None
    """``realtime`` or ``batch`` (a provider batch answered it) for a succeeded or failed job, else None."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueState:
    """What is left of a run's queue."""

    pending: int
    held_back: int
    """Pending jobs whose ``not_before`` (a backoff) is still in the future."""
    next_due_at: datetime | None
    running: int
