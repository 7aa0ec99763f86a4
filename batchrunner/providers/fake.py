"""The ``fake`` provider: deterministic answers in-process, no network, no key.

It is what ``--provider fake`` names: demos, dry runs of any manifest and cost rehearsals (token counts
look like a real run's). Everything is a pure function of the endpoint and the body, so the same job
always gets the same answer, in any process, on any machine:

- **input tokens**: ``ceil(chars / 4)`` (at least 1) over every text the model would read (all messages,
  ``system``, ``instructions``, the embeddings input);
- **answer**: ``"Fake answer <hash> to: <the start of the prompt>"``, where the prompt is the last ``user``
  message (or the ``input``) and the hash is a BLAKE2b digest of the whole request; its output tokens are
  ``ceil(chars / 4)``, and the text is cut to ``4 * max_tokens`` characters when the request's output cap
  (``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``) is lower, which is reported as
  ``finish_reason: "length"`` / ``stop_reason: "max_tokens"`` like the real APIs do;
- **embeddings**: unit vectors (``dimensions`` long, default 8) derived from each input's hash;
- ``response_json`` has the shape of the real endpoint's answer (chat completion, response, embeddings
  list, Anthropic message); an unknown endpoint gets a small generic object.

Bodies the real API would reject at once (no ``model``, no ``messages``/``input``, an Anthropic request
without ``max_tokens``) raise :class:`~batchrunner.errors.PermanentError`, so a dry run finds them.
An optional latency (``latency_ms``) is slept per call; a latency longer than the request's timeout
raises :class:`~batchrunner.errors.ProviderTimeout` after the timeout, as a real slow server would.
A request with ``"stream": true`` gets the same answer, all at once: its time to first token is the
latency (the fake has no events to keep, so ``stream_events`` stays empty).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import struct
import time
from typing import Any, Final

from batchrunner.errors import PermanentError, ProviderTimeout
from batchrunner.models import Endpoint, Usage
from batchrunner.providers.base import ProviderRequest, ProviderResponse

__all__ = ["FakeProvider", "estimate_tokens"]

_DEFAULT_DIMENSIONS: Final = 8
_PROMPT_CHARS: Final = 60
_CAP_FIELDS: Final = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def estimate_tokens(chars: int) -> int:
    """``ceil(chars / 4)``, at least 1: the fake's token count for a text of ``chars`` characters."""
    return max(1, math.ceil(chars / 4))


class FakeProvider:
    """An in-process provider with deterministic answers; see the module docstring."""

    def __init__(self, *, name: str = "fake", latency_ms: float = 0.0) -> None:
        if not (math.isfinite(latency_ms) and latency_ms >= 0):
            raise ValueError(f"latency_ms must be a finite number >= 0, not {latency_ms!r}")
        self.name = name
        self._latency_s = latency_ms / 1000

    def __repr__(self) -> str:
        return f"FakeProvider(name={self.name!r}, latency_ms={self._latency_s * 1000:g})"

    @property
    def base_url(self) -> str:
        return "in-process"

    async def aclose(self) -> None:
        """Nothing to release."""

    async def call(self, request: ProviderRequest) -> ProviderResponse:
        """Answer ``request`` deterministically, after the configured latency."""
        started = time.perf_counter()
        request.sent()
        if self._latency_s > 0:
            await asyncio.sleep(min(self._latency_s, request.timeout_s))
            if self._latency_s > request.timeout_s:
                raise ProviderTimeout(f"{self.name}: no answer within {request.timeout_s:g} s (fake latency)")
        body = request.body
        digest = hashlib.blake2b(
            json.dumps([request.endpoint, body], sort_keys=True, default=str).encode(), digest_size=16
        ).hexdigest()
        data, output_text, usage = _answer(self.name, request.endpoint, body, digest)
        return ProviderResponse(
            output_text=output_text,
            response_json=json.dumps(data, separators=(",", ":")),
            usage=usage,
            model=body.get("model") if isinstance(body.get("model"), str) else None,
            request_id=f"req_fake_{digest[:20]}",
            ttft_ms=(time.perf_counter() - started) * 1000 if body.get("stream") is True else None,
        )


def _answer(
    name: str, endpoint: str, body: dict[str, Any], digest: str
) -> tuple[dict[str, Any], str | None, Usage]:
    """``(response JSON, output text, usage)`` for ``body`` sent to ``endpoint``."""
    known = endpoint in {e.value for e in Endpoint}
    model = body.get("model")
    if known and (not isinstance(model, str) or not model):
        raise PermanentError(f"{name}: model: a non-empty string is required")
    if endpoint == Endpoint.EMBEDDINGS:
        return _embeddings(name, body)
    prompt, chars = _prompt(name, endpoint, body)
    cap = _output_cap(name, endpoint, body)
    text = f"Fake answer {digest[:8]} to: {prompt[:_PROMPT_CHARS]}"
    truncated = False
    if cap is not None and estimate_tokens(len(text)) > cap:
        text, truncated = text[: 4 * cap], True
    usage = Usage(input_tokens=estimate_tokens(chars), output_tokens=estimate_tokens(len(text)))
    if endpoint == Endpoint.CHAT_COMPLETIONS:
        return _chat(body, digest, text, usage, truncated), text, usage
    if endpoint == Endpoint.RESPONSES:
        return _responses(body, digest, text, usage, truncated), text, usage
    if endpoint == Endpoint.MESSAGES:
        return _message(body, digest, text, usage, truncated), text, usage
    generic = {
        "id": f"fake-{digest[:24]}",
        "object": "fake.answer",
        "endpoint": endpoint,
        "output_text": text,
    }
    return {**generic, "usage": _openai_usage(usage)}, text, usage


def _text(content: Any) -> str:
    """The text of a message content: a string, or the ``text`` of each part of a list, newline-joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _prompt(name: str, endpoint: str, body: dict[str, Any]) -> tuple[str, int]:
    """``(the prompt the answer quotes, characters of all input text)``; validates what the API requires."""
    extra = len(_text(body.get("system"))) + len(_text(body.get("instructions")))
    if endpoint in (Endpoint.CHAT_COMPLETIONS, Endpoint.MESSAGES):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise PermanentError(f"{name}: messages: a non-empty list of message objects is required")
    else:  # the Responses API, or any other endpoint: "input" (or "messages", or "prompt")
        raw = body["input"] if "input" in body else body.get("messages", body.get("prompt"))
        if isinstance(raw, str) and raw:
            return raw, len(raw) + extra
        if endpoint == Endpoint.RESPONSES and not (isinstance(raw, list) and raw):
            raise PermanentError(f"{name}: input: a non-empty string or list of items is required")
        messages = raw if isinstance(raw, list) else []
    items = [m for m in messages if isinstance(m, dict)]
    users = [m for m in items if m.get("role") == "user"] or items
    prompt = _text(users[-1].get("content")) if users else ""
    return prompt, sum(len(_text(m.get("content"))) for m in items) + extra


def _output_cap(name: str, endpoint: str, body: dict[str, Any]) -> int | None:
    """The request's output-token cap, if any (Anthropic requires one)."""
    for field in _CAP_FIELDS:
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PermanentError(f"{name}: {field}: an integer >= 1 is required")
        return value
    if endpoint == Endpoint.MESSAGES:
        raise PermanentError(f"{name}: max_tokens: required")
    return None


def _openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def _chat(body: dict[str, Any], digest: str, text: str, usage: Usage, truncated: bool) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text, "refusal": None},
        "logprobs": None,
        "finish_reason": "length" if truncated else "stop",
    }
    return {
        "id": f"chatcmpl-fake{digest[:24]}",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [choice],
        "usage": _openai_usage(usage),
    }


def _responses(body: dict[str, Any], digest: str, text: str, usage: Usage, truncated: bool) -> dict[str, Any]:
    item = {
        "type": "message",
        "id": f"msg_fake{digest[:24]}",
        "status": "incomplete" if truncated else "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return {
        "id": f"resp_fake{digest[:24]}",
        "object": "response",
        "created_at": 0,
        "status": "incomplete" if truncated else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "model": body["model"],
        "output": [item],
        "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }


def _message(body: dict[str, Any], digest: str, text: str, usage: Usage, truncated: bool) -> dict[str, Any]:
    return {
        "id": f"msg_fake{digest[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if truncated else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": usage.output_tokens,
        },
    }


def _embeddings(name: str, body: dict[str, Any]) -> tuple[dict[str, Any], None, Usage]:
    raw = body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw:
        inputs = [item if isinstance(item, str) else json.dumps(item) for item in raw]
    else:
        raise PermanentError(f"{name}: input: a string or a non-empty list is required")
    dimensions = body.get("dimensions", _DEFAULT_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        raise PermanentError(f"{name}: dimensions: an integer in 1..4096 is required")
    tokens = estimate_tokens(sum(len(text) for text in inputs))
    data = [
        {"object": "embedding", "index": index, "embedding": _vector(text, dimensions)}
        for index, text in enumerate(inputs)
    ]
    usage = Usage(input_tokens=tokens)
    response = {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return response, None, usage


def _vector(text: str, dimensions: int) -> list[float]:
    """A unit vector of ``dimensions`` floats derived from ``text``."""
    raw = b""
    block = 0
    while len(raw) < 2 * dimensions:
        raw += hashlib.blake2b(text.encode(), digest_size=64, salt=block.to_bytes(16, "big")).digest()
        block += 1
    values = [v / 32767.5 - 1.0 for v in struct.unpack(f">{dimensions}H", raw[: 2 * dimensions])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]
