"""The OpenAI wire format without the SDK: which endpoints are served, and what a 2xx answer must hold.

Shared by both transports of the OpenAI adapter (:mod:`batchrunner.providers.openai`, over the SDK, and
:mod:`batchrunner.providers.openai_http`, over aiohttp), so they read answers alike.

What a 200 must contain, else :class:`~batchrunner.errors.InvalidResponse` (retried, never stored):
a JSON object; chat: a non-empty ``choices`` whose first item has a ``message``; responses: an ``output``
list (and not ``status: "failed"``); embeddings: a non-empty ``data`` list.

A 200 **without usage** is accepted with ``Usage()`` zeros and a warning in the log (once per endpoint):
the answer was paid for, and rejecting it would pay again for an answer the same server would again
send without usage (some OpenAI-compatible servers never report it). The raw JSON is stored as received,
so the missing usage stays visible; costs for such a server are under-reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from batchrunner.errors import PermanentError, ProviderError
from batchrunner.models import Endpoint, Usage
from batchrunner.providers.base import ProviderRequest, ProviderResponse
from batchrunner.providers.catalog import ENDPOINTS
from batchrunner.providers.errors import invalid_response, json_object, safe_cause, token_count
from batchrunner.providers.headers import openai_rate_limits
from batchrunner.providers.openai_stream import ChatStream
from batchrunner.providers.streaming import StreamedBody, answered_whole, collect, read_failure

__all__ = ["OpenAIAnswers", "streamed_body", "usage_of"]

logger = logging.getLogger("batchrunner.providers.openai")

_PATHS: Final[dict[str, str]] = {
    endpoint.value: endpoint.value.removeprefix("/v1") for endpoint in ENDPOINTS["openai"]
}
"""Endpoints the adapter serves, and their path under ``base_url`` (which ends in ``/v1``)."""


class OpenAIAnswers:
    """One provider's reading of requests and answers (it remembers which endpoints lacked usage)."""

    def __init__(self, name: str, secrets: tuple[str, ...]) -> None:
        self.name = name
        self._secrets = secrets
        self._warned_no_usage: set[str] = set()

    def path(self, request: ProviderRequest) -> str:
        """The request's path under the base URL; ``PermanentError`` for what the adapter cannot send."""
        path = _PATHS.get(request.endpoint)
        if path is None:
            raise PermanentError(
                f"{self.name}: endpoint {request.endpoint} is not served by the OpenAI adapter"
            )
        if request.body.get("stream") is True and request.endpoint != Endpoint.CHAT_COMPLETIONS:
            raise PermanentError(
                f"{self.name}: streaming is supported for {Endpoint.CHAT_COMPLETIONS.value} only, "
                f'not {request.endpoint}; remove "stream": true'
            )
        return path

    async def streamed_response(
        self, endpoint: Endpoint, status: int, headers: Mapping[str, str], body: StreamedBody
    ) -> ProviderResponse:
        """The answer of a streamed 2xx, read as docs/streaming.md says, for either transport."""
        try:
            if answered_whole(headers.get("content-type")):
                return self.response(endpoint, status, headers, await body.text())
            streamed = await collect(body.lines, ChatStream(), started=body.started)
        except ProviderError:
            raise
        except Exception as exc:
            error = read_failure(
                self.name,
                exc,
                request_id=headers.get("x-request-id"),
                rate_limits=openai_rate_limits(headers),
                secrets=self._secrets,
                timeout_s=body.timeout_s,
            )
            raise error from safe_cause(exc, self._secrets)
        text = json.dumps(streamed.answer, ensure_ascii=False, separators=(",", ":"))
        response = self.response(endpoint, status, headers, text, streamed.answer)
        return replace(response, ttft_ms=streamed.ttft_ms, stream_events=streamed.events)

    def response(
        self,
        endpoint: Endpoint,
        status: int,
        headers: Mapping[str, str],
        text: str,
        data: dict[str, Any] | None = None,
    ) -> ProviderResponse:
        """The answer in a 2xx ``text``, kept exactly as received; ``InvalidResponse`` when it is not one.

        ``data``: ``text`` already decoded (a streamed answer, serialised from it), so it is not parsed again.
        """
        request_id = headers.get("x-request-id")
        rate_limits = openai_rate_limits(headers)
        try:
            if data is None:
                data = json_object(text, headers.get("content-type"))
            output_text = _output_text(endpoint, data)
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
            usage=self._usage(endpoint, data),
            model=model if isinstance(model, str) else None,
            status_code=status,
            request_id=request_id,
            rate_limits=rate_limits,
        )

    def _usage(self, endpoint: Endpoint, data: dict[str, Any]) -> Usage:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            log = logger.debug if endpoint in self._warned_no_usage else logger.warning
            self._warned_no_usage.add(endpoint)
            log("%s: a %s answer reported no usage; its tokens are recorded as 0", self.name, endpoint.value)
            return Usage()
        return usage_of(usage)


def streamed_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body of a streamed chat completion as sent: ``stream_options.include_usage`` set to true
    unless the manifest line set it (without usage a streamed answer reports no tokens)."""
    options = body.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        return body
    kept = options if isinstance(options, dict) else {}
    return {**body, "stream_options": {**kept, "include_usage": True}}


def usage_of(usage: dict[str, Any]) -> Usage:
    """Usage in either OpenAI naming: chat and embeddings (``prompt_tokens``) or responses (``input_tokens``).

    Both name the cached part of the input in ``*_tokens_details.cached_tokens``; the input count
    includes it (the convention :class:`~batchrunner.models.Usage` follows for every provider).
    """
    responses_style = "input_tokens" in usage
    details = usage.get("input_tokens_details" if responses_style else "prompt_tokens_details")
    return Usage(
        input_tokens=token_count(usage.get("input_tokens" if responses_style else "prompt_tokens")),
        output_tokens=token_count(usage.get("output_tokens" if responses_style else "completion_tokens")),
        cached_tokens=token_count(details.get("cached_tokens")) if isinstance(details, dict) else 0,
    )


def _output_text(endpoint: Endpoint, data: dict[str, Any]) -> str | None:
    """The answer's text (``None`` for embeddings, or when the model answered with tool calls only).

    ``ValueError`` when the body lacks what the endpoint promises.
    """
    if endpoint is Endpoint.EMBEDDINGS:
        vectors = data.get("data")
        if not isinstance(vectors, list) or not vectors:
            raise ValueError("an embeddings answer without a non-empty 'data' list")
        return None
    if endpoint is Endpoint.RESPONSES:
        return _responses_text(data)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("a chat completion without 'choices'")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise ValueError("a chat completion whose first choice has no 'message'")
    content = message.get("content")
    return content if isinstance(content, str) else None


def _responses_text(data: dict[str, Any]) -> str | None:
    """The ``output_text`` parts of the ``message`` items of a Responses API answer, concatenated."""
    if data.get("status") == "failed":
        error = data.get("error")
        reason = error.get("message") if isinstance(error, dict) else None
        raise ValueError(f"the response failed: {reason or 'no reason given'}")
    output = data.get("output")
    if not isinstance(output, list):
        raise ValueError("a response without an 'output' list")
    parts = [
        part["text"]
        for item in output
        if isinstance(item, dict) and item.get("type") == "message" and isinstance(item.get("content"), list)
        for part in item["content"]
        if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str)
    ]
    return "".join(parts) if parts else None
