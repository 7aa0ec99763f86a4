"""Anthropic wire format: a ``Message`` as JSON, or as the SSE events the SDK's stream helpers aggregate.

Usage follows Anthropic's convention: ``input_tokens`` excludes the tokens read from the prompt cache, which
are reported separately as ``cache_read_input_tokens``.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from batchrunner.fakeserver.answers import Answer
from batchrunner.fakeserver.limits import LimitSnapshot
from batchrunner.fakeserver.prompts import Call


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def usage(call: Call, answer: Answer, *, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": call.input_tokens - answer.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": answer.cached_tokens,
        "output_tokens": answer.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def _stop_reason(answer: Answer) -> str:
    return "max_tokens" if answer.truncated else "end_turn"


def message_object(
    call: Call, answer: Answer, *, ident: str, with_usage: bool, done: bool = True
) -> dict[str, Any]:
    """A ``Message``; ``done=False`` gives the empty one that ``message_start`` carries."""
    body: dict[str, Any] = {
        "id": f"msg_{ident}",
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": answer.text}] if done else [],
        "stop_reason": _stop_reason(answer) if done else None,
        "stop_sequence": None,
    }
    if with_usage:
        body["usage"] = usage(call, answer, output_tokens=None if done else 1)
    return body


def message(call: Call, answer: Answer, *, ident: str, with_usage: bool) -> bytes:
    return _dumps(message_object(call, answer, ident=ident, with_usage=with_usage))


def message_events(call: Call, answer: Answer, *, ident: str, with_usage: bool) -> list[bytes]:
    """``message_start`` ... ``message_stop``, one ``text_delta`` per word."""
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
    }
    if with_usage:
        delta["usage"] = usage(call, answer)
    payloads: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": message_object(call, answer, ident=ident, with_usage=with_usage, done=False),
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            for piece in (word if i == 0 else " " + word for i, word in enumerate(answer.words))
        ),
        {"type": "content_block_stop", "index": 0},
        delta,
        {"type": "message_stop"},
    ]
    return [b"event: " + p["type"].encode() + b"\ndata: " + _dumps(p) + b"\n\n" for p in payloads]


def ratelimit_headers(requests: LimitSnapshot | None, tokens: LimitSnapshot | None) -> dict[str, str]:
    """``anthropic-ratelimit-*`` headers; resets are RFC 3339 times (rounded up), as Anthropic sends them."""
    headers: dict[str, str] = {}
    now = time.time()
    for name, snapshot in (("requests", requests), ("tokens", tokens)):
        if snapshot is not None:
            reset = datetime.fromtimestamp(math.ceil(now + snapshot.reset_s), UTC).isoformat()
            headers[f"anthropic-ratelimit-{name}-limit"] = str(snapshot.limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(snapshot.remaining)
            headers[f"anthropic-ratelimit-{name}-reset"] = reset.replace("+00:00", "Z")
    return headers
