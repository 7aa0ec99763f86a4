"""The OpenAI adapter: chat completions, embeddings and responses through ``openai.AsyncOpenAI``.

Any OpenAI-compatible server works through ``base_url`` (vLLM, Ollama, LiteLLM, and the ``gemini`` and
``cohere`` presets of :mod:`batchrunner.providers.catalog`, which also lists the endpoints served).

Why the generic ``client.post(path, body=...)`` rather than ``client.chat.completions.create(**body)``:
the body is sent exactly as queued (a field this SDK version does not know still reaches the server), one
code path serves every endpoint, and the raw response keeps the headers (request id, rate limits) and the
exact JSON text that is stored as ``response_json``. The client is built with ``max_retries=0``
(batchrunner owns every retry) and each call gets an explicit timeout: ``connect`` from the adapter, the
rest (read, write, pool) from the request's ``timeout_s``. The outer per-attempt deadline is the engine's.

What a 200 must contain, else :class:`~batchrunner.errors.InvalidResponse` (retried, never stored):
a JSON object; chat: a non-empty ``choices`` whose first item has a ``message``; responses: an ``output``
list (and not ``status: "failed"``); embeddings: a non-empty ``data`` list.

A 200 **without usage** is accepted with ``Usage()`` zeros and a warning in the log (once per endpoint):
the answer was paid for, and rejecting it would pay again for an answer the same server would again
send without usage (some OpenAI-compatible servers never report it). The raw JSON is stored as received,
so the missing usage stays visible; costs for such a server are under-reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Final

import openai

from batchrunner.errors import PermanentError, ProviderError
from batchrunner.models import Endpoint, Usage
from batchrunner.providers.base import ProviderRequest, ProviderResponse
from batchrunner.providers.catalog import ENDPOINTS, OPENAI_BASE_URL
from batchrunner.providers.errors import (
    error_from_response,
    invalid_response,
    json_object,
    redact,
    safe_cause,
    token_count,
    transport_error,
)
from batchrunner.providers.headers import openai_rate_limits
from batchrunner.secret import Secret

__all__ = ["OpenAIProvider"]

logger = logging.getLogger(__name__)

_PATHS: Final[dict[str, str]] = {
    endpoint.value: endpoint.value.removeprefix("/v1") for endpoint in ENDPOINTS["openai"]
}
"""Endpoints this adapter serves, and their path under ``base_url`` (which ends in ``/v1``)."""


class OpenAIProvider:
    """An OpenAI (or OpenAI-compatible) API; see the module docstring for what it promises."""

    def __init__(
        self,
        *,
        api_key: str | Secret,
        base_url: str | None = None,
        name: str = "openai",
        connect_timeout_s: float = 10.0,
        timeout_s: float = 600.0,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, Secret) else api_key
        self.name = name
        self._secrets = (key,)
        self._connect_timeout_s = connect_timeout_s
        self._warned_no_usage: set[str] = set()
        # base_url is always passed: the SDK would otherwise read OPENAI_BASE_URL itself (STYLE habit 19).
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=base_url or OPENAI_BASE_URL,
            max_retries=0,
            timeout=openai.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
        )

    def __repr__(self) -> str:
        return f"OpenAIProvider(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def call(self, request: ProviderRequest) -> ProviderResponse:
        """Send one request; return the parsed answer or raise a ``ProviderError`` subclass."""
        path = _PATHS.get(request.endpoint)
        if path is None:
            raise PermanentError(
                f"{self.name}: endpoint {request.endpoint} is not served by the OpenAI adapter"
            )
        if request.body.get("stream") is True:
            raise PermanentError(f'{self.name}: streaming requests are not supported; remove "stream": true')
        timeout = openai.Timeout(request.timeout_s, connect=min(self._connect_timeout_s, request.timeout_s))
        try:
            raw = await self._client.post(
                path,
                body=request.body,
                cast_to=openai.AsyncAPIResponse[bytes],
                options={"timeout": timeout},
            )
            text = await raw.text()
        except openai.OpenAIError as exc:
            raise self._sdk_error(exc, request.timeout_s) from safe_cause(exc, self._secrets)
        return self._response(Endpoint(request.endpoint), raw.status_code, raw.headers, text)

    def _sdk_error(self, exc: openai.OpenAIError, timeout_s: float) -> ProviderError:
        """Translate an SDK exception (the table in :mod:`batchrunner.providers.errors`)."""
        if isinstance(exc, openai.APIStatusError):
            headers = exc.response.headers
            return error_from_response(
                self.name,
                status=exc.status_code,
                headers=headers,
                body=exc.body,
                request_id=exc.request_id,
                rate_limits=openai_rate_limits(headers),
                secrets=self._secrets,
                now=time.time(),
            )
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is a subclass, told apart here
            timed_out = isinstance(exc, openai.APITimeoutError)
            return transport_error(
                self.name, exc.__cause__, timed_out=timed_out, timeout_s=timeout_s, secrets=self._secrets
            )
        # Not an HTTP outcome (the SDK refused the call itself): retrying would fail the same way.
        return PermanentError(redact(f"{self.name}: {type(exc).__name__}: {exc}", self._secrets))

    def _response(
        self, endpoint: Endpoint, status: int, headers: Mapping[str, str], text: str
    ) -> ProviderResponse:
        request_id = headers.get("x-request-id")
        rate_limits = openai_rate_limits(headers)
        try:
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
