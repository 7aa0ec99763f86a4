"""Frozen values that every layer shares: job specs, job states, usage and results."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a job is in its life (DESIGN.md "Job life")."""

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


class ManifestFormat(StrEnum):
    """The three manifest line formats of DESIGN.md, detected per line."""

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
    """How the run is run, as remembered by its first ``run`` (batchrunner.runsettings); None: not yet."""
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
