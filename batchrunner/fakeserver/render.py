"""The body of a successful answer for any route: JSON bytes, or a list of SSE events when streaming.

Also the two "200 but broken" bodies: invalid JSON and an HTML page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from batchrunner.fakeserver import anthropic_wire, openai_wire
from batchrunner.fakeserver.answers import Answer, make_answer
from batchrunner.fakeserver.prompts import Api, Call

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>fake-proxy</center></body></html>\n"
)
_MAX_DIMENSIONS = 65536


@dataclass(frozen=True, kw_only=True, slots=True)
class Rendered:
    """A success body and what the books need to know about it."""

    body: bytes | None
    """The JSON body (``None`` when streaming)."""
    events: list[bytes] | None
    """The SSE events (``None`` when not streaming)."""
    input_tokens: int
    output_tokens: int
    cached_tokens: int


def render(call: Call, *, ident: str, with_usage: bool, embedding_dim: int) -> Rendered:
    """The answer to ``call``; ``with_usage=False`` leaves the usage out (the ``no-usage`` fault)."""
    if call.api is Api.EMBEDDINGS:
        return _embeddings(call, embedding_dim)
    answer = make_answer(call.key, max_tokens=call.max_tokens, input_tokens=call.input_tokens)
    created = int(time.time())
    if call.api is Api.MESSAGES:
        if call.stream:
            events = anthropic_wire.message_events(call, answer, ident=ident, with_usage=with_usage)
            return _rendered(call, answer, None, events)
        return _rendered(
            call, answer, anthropic_wire.message(call, answer, ident=ident, with_usage=with_usage), None
        )
    if call.api is Api.RESPONSES:
        if call.stream:
            events = openai_wire.response_events(call, answer, ident=ident, created=created, usage=with_usage)
            return _rendered(call, answer, None, events)
        body = openai_wire.response(call, answer, ident=ident, created=created, usage=with_usage)
        return _rendered(call, answer, body, None)
    if call.stream:
        events = openai_wire.chat_chunks(call, answer, ident=ident, created=created, usage=with_usage)
        return _rendered(call, answer, None, events)
    body = openai_wire.chat_completion(call, answer, ident=ident, created=created, usage=with_usage)
    return _rendered(call, answer, body, None)


def _embeddings(call: Call, default_dimensions: int) -> Rendered:
    """Embeddings in the request's ``dimensions`` if it asks for a sane number, else the server default."""
    dimensions = call.body.get("dimensions")
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= _MAX_DIMENSIONS
    ):
        dimensions = default_dimensions
    body = openai_wire.embeddings(call, dimensions=dimensions)
    return Rendered(body=body, events=None, input_tokens=call.input_tokens, output_tokens=0, cached_tokens=0)


def _rendered(call: Call, answer: Answer, body: bytes | None, events: list[bytes] | None) -> Rendered:
    return Rendered(
        body=body,
        events=events,
        input_tokens=call.input_tokens,
        output_tokens=answer.output_tokens,
        cached_tokens=answer.cached_tokens,
    )


def corrupt_events(call: Call, events: list[bytes]) -> list[bytes]:
    """A stream whose second event carries data that is not JSON."""
    broken = (
        b'event: content_block_delta\ndata: {"type": "content_bl\n\n'
        if call.api.is_anthropic
        else (b'data: {"id": "chatcmpl-\n\n')
    )
    return [events[0], broken, *events[1:]]


def corrupt_body(body: bytes) -> bytes:
    """A JSON body cut in half: the content type says JSON, the bytes are not."""
    return body[: max(1, len(body) // 2)]
