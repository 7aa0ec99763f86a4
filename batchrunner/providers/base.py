"""The seam between the engine and the LLM APIs: one Protocol, and the values that cross it.

Each adapter is the only importer of its SDK (STYLE habit 4) and translates every SDK error, once, into
the project's own classes in ``batchrunner.errors`` (habit 8): the engine never sees an SDK exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from batchrunner.models import RateLimitInfo, Usage


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderRequest:
    """One call to make: the endpoint and its JSON body, exactly as queued."""

    endpoint: str
    body: dict[str, Any]
    timeout_s: float
    on_sent: Callable[[], None] | None = None
    """Called once as the request goes out: over the ``http`` transport when its headers have been handed
    to the connection (so a request still waiting for a connection is not counted as sent), else just
    before the adapter sends it. Never called for a request refused before sending."""

    def sent(self) -> None:
        """Tell :attr:`on_sent` (adapters call this)."""
        if self.on_sent is not None:
            self.on_sent()


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderResponse:
    """A successful call: the answer's text, the raw response, usage and what the headers said."""

    output_text: str | None
    response_json: str
    usage: Usage
    model: str | None = None
    status_code: int = 200
    request_id: str | None = None
    rate_limits: RateLimitInfo | None = None
    ttft_ms: float | None = None
    """A streamed answer's time to first token (docs/streaming.md); ``None`` when not streamed."""
    stream_events: bytes | None = None
    """A streamed answer's raw events, packed (:func:`batchrunner.providers.streaming.pack_events`)."""


class Provider(Protocol):
    """An LLM API. ``call`` returns a response or raises a ``batchrunner.errors.ProviderError``."""

    name: str

    @property
    def base_url(self) -> str:
        """Where the calls go, for the log (holds no key)."""
        ...

    async def call(self, request: ProviderRequest) -> ProviderResponse: ...

    async def aclose(self) -> None: ...


__all__ = ["Provider", "ProviderRequest", "ProviderResponse", "RateLimitInfo"]
