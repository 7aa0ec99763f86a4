"""Reading a streamed answer, the same way for every adapter and transport: SSE lines in, one answer out.

The rules (docs/streaming.md):

- the events are added up by the API's accumulator (:mod:`batchrunner.providers.openai_stream`,
  :mod:`batchrunner.providers.anthropic_stream`) into the answer a request without ``stream`` gets,
  which is stored as ``response_json`` and read like any other answer (text, usage, finish reason);
- **time to first token** runs from the call's start (the adapter's clock, taken before a connection is
  acquired) to the first event that carried output;
- the **raw events** are kept compactly: each event's data as received, one per line, zlib-compressed
  (:func:`pack_events`, :func:`unpack_events`);
- a stream that ends before it is complete is **cut**: a :class:`~batchrunner.errors.TransientError`,
  ``possibly_billed`` (the model ran), retried and never stored as a partial answer;
- a 200 whose content type is JSON came from a server that ignored ``stream``: it is read as the
  unstreamed answer it is (:func:`answered_whole`), not as a stream that never began;
- an **error event** is classified like an HTTP error (the "error event" row of
  :mod:`batchrunner.providers.errors`); an event that cannot be read is an ``InvalidResponse``.

A transport failure while reading (a reset, a timeout) is told apart by
:func:`~batchrunner.providers.errors.transport_failure_kind`, which knows every transport's exception
classes by name: it is ``possibly_billed`` (the request was sent).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from batchrunner.errors import ProviderError, TransientError
from batchrunner.models import RateLimitInfo
from batchrunner.providers.errors import (
    error_from_response,
    invalid_response,
    redact,
    transport_error,
    transport_failure_kind,
)
from batchrunner.providers.sse import SseEvent, SseParser

__all__ = [
    "Accumulator",
    "ErrorEvent",
    "StreamCut",
    "Streamed",
    "StreamedBody",
    "answered_whole",
    "collect",
    "pack_events",
    "read_failure",
    "unpack_events",
]


class ErrorEvent(Exception):
    """An error event inside a 200 stream; ``payload`` is its decoded data."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__("error event")
        self.payload = payload


class StreamCut(Exception):
    """The stream ended before it was complete."""

    def __init__(self, events: int) -> None:
        super().__init__(f"the stream ended after {events} events, before its end")
        self.events = events


class Accumulator(Protocol):
    """Adds the events of one API's stream up into its answer."""

    def feed(self, event: SseEvent) -> bool:
        """Take one event; True when it carried output."""
        ...

    @property
    def complete(self) -> bool: ...

    def answer(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """The unread body of a streamed 2xx, as a transport hands it over: its ``lines`` (read as a
    stream), or the whole of it as ``text()`` (a server that ignored ``stream``); ``started`` is the
    call's ``perf_counter()`` and ``timeout_s`` its timeout, for the error of a failed read."""

    lines: AsyncIterable[str]
    text: Callable[[], Awaitable[str]]
    started: float
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Streamed:
    """A complete stream: the answer it adds up to, its raw events (packed) and when output began."""

    answer: dict[str, Any]
    events: bytes
    event_count: int
    ttft_ms: float | None


async def collect(lines: AsyncIterable[str], accumulator: Accumulator, *, started: float) -> Streamed:
    """Read ``lines`` to their end into ``accumulator``; ``started`` is the call's ``perf_counter()``.

    Raises :class:`StreamCut`, :class:`ErrorEvent` or ``ValueError`` (see :func:`read_failure`).
    """
    parser = SseParser()
    raw: list[str] = []
    ttft_ms: float | None = None
    async for line in lines:
        event = parser.feed(line)
        if event is None:
            continue
        raw.append(event.data)
        if accumulator.feed(event) and ttft_ms is None:
            ttft_ms = (time.perf_counter() - started) * 1000
    if not accumulator.complete:
        raise StreamCut(len(raw))
    return Streamed(
        answer=accumulator.answer(), events=pack_events(raw), event_count=len(raw), ttft_ms=ttft_ms
    )


def answered_whole(content_type: str | None) -> bool:
    """True for a JSON answer to a streamed request: the server ignored ``stream`` (some
    OpenAI-compatible servers do) and sent the whole answer at once."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def pack_events(events: Iterable[str]) -> bytes:
    """The events' data, one per line, zlib-compressed (how ``results.stream_events`` stores them)."""
    return zlib.compress("\n".join(events).encode(), 6)


def unpack_events(packed: bytes) -> list[str]:
    """The events' data as :func:`pack_events` stored them."""
    text = zlib.decompress(packed).decode()
    return text.split("\n") if text else []


def read_failure(
    provider: str,
    exc: Exception,
    *,
    request_id: str | None,
    rate_limits: RateLimitInfo | None,
    secrets: tuple[str, ...],
    timeout_s: float,
) -> ProviderError:
    """The project's error for what reading a stream raised: :func:`collect`'s own exceptions, a
    transport failure, or (anything else) an answer that could not be read."""
    if isinstance(exc, ErrorEvent):
        return error_from_response(
            provider,
            status=200,
            headers={},
            body=exc.payload,
            request_id=request_id,
            rate_limits=rate_limits,
            secrets=secrets,
            now=time.time(),
        )
    if isinstance(exc, StreamCut):
        return TransientError(
            redact(f"{provider}: {exc}", secrets),
            status_code=200,
            request_id=request_id,
            rate_limits=rate_limits,
            possibly_billed=True,
        )
    kind = None if isinstance(exc, ValueError) else transport_failure_kind(exc)
    if kind is not None:
        return transport_error(
            provider, exc, timed_out=kind == "timeout", timeout_s=timeout_s, secrets=secrets
        )
    reason = f"the event stream could not be read ({type(exc).__name__}: {exc})"
    return invalid_response(
        provider, reason, status=200, request_id=request_id, rate_limits=rate_limits, secrets=secrets
    )
