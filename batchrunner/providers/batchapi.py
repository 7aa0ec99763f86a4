"""The seam between the engine and the providers' batch APIs: one Protocol, and the values that cross it.

Two implementations, both over aiohttp (:mod:`batchrunner.providers.http`), never an SDK (the SDKs build a
request body in memory, and a 100,000-request Anthropic body or a 200 MB OpenAI upload must be streamed
from disk): :mod:`batchrunner.providers.openai_batch` (Files + Batch API) and
:mod:`batchrunner.providers.anthropic_batch` (Message Batches). The wire formats, states and limits they
rely on, and how recovery finds a batch again after a crash, are in docs/batch-wire.md.

A line's outcome is what the same answer given in real time would be: a SUCCEEDED line carries the
``ProviderResponse`` the realtime adapter would build from the same body (``OpenAIAnswers`` /
``AnthropicAnswers``), an ERRORED line the ``ProviderError`` of the same class (classified by
:func:`~batchrunner.providers.errors.error_from_response`). The batch endpoints' own failures (401, 429,
5xx, a lost connection) raise the ``ProviderError`` classes a realtime call would raise, ``retry_after``
included, so the engine waits, retries or stops alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from batchrunner.errors import ProviderError
from batchrunner.providers.base import ProviderResponse

if TYPE_CHECKING:
    from batchrunner.providers.registry import ProviderSettings

__all__ = [
    "ANTHROPIC_LIMITS",
    "LOCAL_ID_KEY",
    "OPENAI_LIMITS",
    "BatchApi",
    "BatchLimits",
    "LineKind",
    "LineOutcome",
    "RemoteBatch",
    "open_batch_api",
]

LOCAL_ID_KEY: Final = "batchrunner_batch"
"""The OpenAI batch ``metadata`` key that carries batchrunner's local batch id."""


class LineKind(StrEnum):
    """What became of one request of a provider batch."""

    SUCCEEDED = "succeeded"
    """Answered: :attr:`LineOutcome.response` holds the answer."""
    ERRORED = "errored"
    """The provider answered with an error: :attr:`LineOutcome.error` holds it, classified as in real time."""
    EXPIRED = "expired"
    """Not run before the batch's window closed (or it expired): the job may be sent again."""
    CANCELED = "canceled"
    """Not run because the batch was cancelled: the job may be sent again."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoteBatch:
    """A provider batch as the provider reports it."""

    id: str
    status: str
    """The provider's own word (OpenAI ``status``, Anthropic ``processing_status``)."""
    ended: bool
    """No more lines will complete (OpenAI completed/failed/expired/cancelled, Anthropic ended)."""
    total: int
    succeeded: int
    errored: int
    expired: int
    canceled: int
    """Processing: ``total`` minus the four counts."""
    created_at: datetime
    """Timezone-aware UTC."""
    local_id: str | None
    """batchrunner's local batch id, from the OpenAI metadata (:data:`LOCAL_ID_KEY`); ``None`` for
    Anthropic."""
    input_file_id: str | None = None
    failure: str | None = None
    """Why the provider refused the whole batch (OpenAI validation errors), redacted; ``None`` otherwise."""

    @property
    def processing(self) -> int:
        """Lines not finished yet."""
        return max(0, self.total - self.succeeded - self.errored - self.expired - self.canceled)


@dataclass(frozen=True, kw_only=True, slots=True)
class LineOutcome:
    """One result line of an ended batch."""

    custom_id: str
    kind: LineKind
    response: ProviderResponse | None
    """The answer (SUCCEEDED only)."""
    error: ProviderError | None
    """The provider's error, classified as a realtime answer would be (ERRORED only)."""
    raw_line: str
    """The provider's result line as received."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchLimits:
    """What one provider batch may hold."""

    max_requests: int
    max_bytes: int
    """The input file (OpenAI) or the request body (Anthropic), as the sum of :meth:`BatchApi.line`."""


OPENAI_LIMITS: Final = BatchLimits(max_requests=50_000, max_bytes=200 * 1000 * 1000)
"""OpenAI: 50,000 requests and 200 MB per input file."""
ANTHROPIC_LIMITS: Final = BatchLimits(max_requests=100_000, max_bytes=256 * 1000 * 1000 - 4096)
"""Anthropic: 100,000 requests and 256 MB per batch (less the ``{"requests":[...]}`` around the lines)."""


class BatchApi(Protocol):
    """A provider's batch API. Every coroutine raises a ``batchrunner.errors.ProviderError`` on failure."""

    limits: BatchLimits

    def line(self, custom_id: str, endpoint: str, body_json: str) -> bytes:
        """One request in the provider's own line format, ``b"...\\n"``: an OpenAI Batch input line, or an
        Anthropic ``{"custom_id", "params"}``. ``ValueError`` for what the provider cannot take (an
        endpoint it does not serve, an Anthropic custom_id outside ``^[a-zA-Z0-9_-]{1,64}$``)."""
        ...

    async def upload(self, local_id: str, path: Path) -> str | None:
        """OpenAI: upload ``path`` (streamed from disk) as ``batchrunner-{local_id}.jsonl``, purpose
        ``batch``; returns the file id. Anthropic: ``None`` (no files)."""
        ...

    async def find_upload(self, local_id: str) -> str | None:
        """OpenAI: the newest uploaded file named for ``local_id``, if any. Anthropic: ``None``."""
        ...

    async def create(self, local_id: str, endpoint: str, path: Path, file_id: str | None) -> RemoteBatch:
        """Create the batch: OpenAI from ``file_id`` with ``local_id`` in its metadata; Anthropic by posting
        the lines of ``path`` streamed as ``{"requests": [line, ...]}``."""
        ...

    async def find(self, local_id: str, created_after: datetime, request_count: int) -> list[RemoteBatch]:
        """Batches a lost ``create`` may have made, newest first: OpenAI by metadata; Anthropic those
        created since ``created_after`` (less a few minutes of clock skew) with ``request_count`` lines."""
        ...

    async def get(self, batch_id: str) -> RemoteBatch: ...

    async def cancel(self, batch_id: str) -> RemoteBatch:
        """Ask the provider to cancel; a batch that has already ended is returned as it is."""
        ...

    def results(self, batch: RemoteBatch) -> AsyncIterator[LineOutcome]:
        """Every line of an ended batch, streamed (flat memory): OpenAI's output and error files, or
        Anthropic's results JSONL. ``ValueError`` if the batch has not ended."""
        ...

    async def aclose(self) -> None: ...


def open_batch_api(settings: ProviderSettings) -> BatchApi | None:
    """The batch API of the provider ``settings`` describe; ``None`` for a kind without one (``fake``).

    Raises :class:`~batchrunner.errors.ConfigError` when the key is missing.
    """
    if settings.kind == "fake":
        return None
    from batchrunner.providers.registry import missing_key_error

    if settings.api_key is None or not settings.api_key:
        raise missing_key_error(settings.name, settings.key_env)
    if settings.kind == "anthropic":
        from batchrunner.providers.anthropic_batch import AnthropicBatchApi

        return AnthropicBatchApi(settings)
    from batchrunner.providers.openai_batch import OpenAIBatchApi

    return OpenAIBatchApi(settings)
