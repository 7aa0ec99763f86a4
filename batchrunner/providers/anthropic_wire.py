"""The Anthropic wire format without the SDK: when a request must be streamed, and what a message holds.

Shared by both transports of the Anthropic adapter (:mod:`batchrunner.providers.anthropic`, over the SDK,
and :mod:`batchrunner.providers.anthropic_http`, over aiohttp).

**Usage** follows one convention for every provider (:class:`~batchrunner.models.Usage`): the input count
*includes* the cached part. Anthropic reports ``input_tokens`` without the prompt-cache reads and writes, so
``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens`` and
``cached_tokens = cache_read_input_tokens``. A 200 without usage is accepted with zeros and a warning
(once per provider), as in :mod:`batchrunner.providers.openai_wire`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from batchrunner.errors import ProviderError
from batchrunner.models import Usage
from batchrunner.providers.anthropic_stream import MessageStream
from batchrunner.providers.base import ProviderResponse
from batchrunner.providers.catalog import ENDPOINTS
from batchrunner.providers.errors import invalid_response, json_object, safe_cause, token_count
from batchrunner.providers.headers import anthropic_rate_limits
from batchrunner.providers.streaming import StreamedBody, answered_whole, collect, read_failure

__all__ = ["SERVED", "AnthropicAnswers", "needs_streaming", "streamed_body", "usage_of"]

logger = logging.getLogger("batchrunner.providers.anthropic")

SERVED: Final = frozenset(endpoint.value for endpoint in ENDPOINTS["anthropic"])
"""The endpoints the adapter serves (the Messages API)."""

_MAX_NONSTREAMING_S: Final = 600.0
_SECONDS_PER_128K_TOKENS: Final = 3600.0
_MODEL_NONSTREAMING_TOKENS: Final = {
    "claude-opus-4-20250514": 8_192,
    "claude-opus-4-0": 8_192,
    "claude-4-opus-20250514": 8_192,
    "anthropic.claude-opus-4-20250514-v1:0": 8_192,
    "claude-opus-4@20250514": 8_192,
    "anthropic.claude-opus-4-1-20250805-v1:0": 8_192,
    "claude-opus-4-1@20250805": 8_192,
}
"""The SDK's per-model caps on non-streaming ``max_tokens`` (its ``MODEL_NONSTREAMING_TOKENS``)."""


def needs_streaming(body: Mapping[str, Any]) -> bool:
    """True when the SDK would demand streaming for ``body`` (see :mod:`batchrunner.providers.anthropic`),
    or it asks for it."""
    if body.get("stream") is True:
        return True
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return False
    expected_s = _SECONDS_PER_128K_TOKENS * max_tokens / 128_000
    cap = _MODEL_NONSTREAMING_TOKENS.get(str(body.get("model")))
    return expected_s > _MAX_NONSTREAMING_S or (cap is not None and max_tokens > cap)


def streamed_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body of a streamed request as sent: ``"stream": true`` (a long request may not have it)."""
    return body if body.get("stream") is True else {**body, "stream": True}


class AnthropicAnswers:
    """One provider's reading of answers (it remembers whether it warned about a missing usage)."""

    def __init__(self, name: str, secrets: tuple[str, ...]) -> None:
        self.name = name
        self._secrets = secrets
        self._warned_no_usage = False

    def response(
        self, status: int, headers: Mapping[str, str], text: str, data: dict[str, Any] | None = None
    ) -> ProviderResponse:
        """The message in a 2xx ``text``, kept exactly as received; ``InvalidResponse`` when it is not one.

        ``data``: ``text`` already decoded (a streamed answer, serialised from it), so it is not parsed again.
        """
        request_id = headers.get("request-id")
        rate_limits = anthropic_rate_limits(headers, now=time.time())
        try:
            if data is None:
                data = json_object(text, headers.get("content-type"))
            output_text = _output_text(data)
        except ValueError as exc:
            raise invalid_response(
                self.name,
                str(exc),
                status=status,
                request_id=request_id,
                rate_limits=rate_limits,
                secrets=self._secrets,
            ) from None
        model = data.get("model")
        return ProviderResponse(
            output_text=output_text,
            response_json=text,
            usage=self._usage(data),
            model=model if isinstance(model, str) else None,
            status_code=status,
            request_id=request_id,
            rate_limits=rate_limits,
        )

    async def streamed_response(
        self, status: int, headers: Mapping[str, str], body: StreamedBody
    ) -> ProviderResponse:
        """The message of a streamed 2xx, read as docs/streaming.md says, for either transport."""
        try:
            if answered_whole(headers.get("content-type")):
                return self.response(status, headers, await body.text())
            streamed = await collect(body.lines, MessageStream(), started=body.started)
        except ProviderError:
            raise
        except Exception as exc:
            error = read_failure(
                self.name,
                exc,
                request_id=headers.get("request-id"),
                rate_limits=anthropic_rate_limits(headers, now=time.time()),
                secrets=self._secrets,
                timeout_s=body.timeout_s,
            )
            raise error from safe_cause(exc, self._secrets)
        text = json.dumps(streamed.answer, ensure_ascii=False, separators=(",", ":"))
        response = self.response(status, headers, text, streamed.answer)
        return replace(response, ttft_ms=streamed.ttft_ms, stream_events=streamed.events)

    def _usage(self, data: dict[str, Any]) -> Usage:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            (logger.debug if self._warned_no_usage else logger.warning)(
                "%s: a message reported no usage; its tokens are recorded as 0", self.name
            )
            self._warned_no_usage = True
            return Usage()
        return usage_of(usage)


def usage_of(usage: dict[str, Any]) -> Usage:
    """Anthropic usage in the convention of :class:`~batchrunner.models.Usage`: input includes cached."""
    cache_read = token_count(usage.get("cache_read_input_tokens"))
    cache_write = token_count(usage.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=token_count(usage.get("input_tokens")) + cache_read + cache_write,
        output_tokens=token_count(usage.get("output_tokens")),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _output_text(data: dict[str, Any]) -> str | None:
    """The ``text`` blocks of a message, concatenated (``None`` when it has none, e.g. only tool use).

    ``ValueError`` when the body is not a message.
    """
    content = data.get("content")
    if data.get("type") not in (None, "message") or not isinstance(content, list):
        raise ValueError("a message without a 'content' list")
    parts = [
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]
    return "".join(parts) if parts else None
