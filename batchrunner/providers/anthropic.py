"""The Anthropic adapter: ``/v1/messages`` through ``anthropic.AsyncAnthropic``.

Like the OpenAI adapter it posts the queued body as is (``client.post``) with ``max_retries=0`` and an
explicit timeout per call, and keeps the raw JSON, ``request-id`` and the ``anthropic-ratelimit-*``
headers.

**Long requests are streamed.** The SDK refuses a non-streaming ``messages.create`` it expects to take
more than 10 minutes (``3600 s * max_tokens / 128000 > 600 s``, i.e. ``max_tokens > 21333``, or above a
per-model cap for a few models) because idle connections that long get dropped on the way. This adapter
applies the same rule, copied in :func:`needs_streaming` rather than calling the SDK's private method,
and sends such a request (and any body with ``"stream": true``) streamed: posted with the SDK's
streamed-response mode (:data:`STREAMED_RESPONSE`), so the SDK still builds the request and raises a
status error before any event, and its lines added up by :mod:`batchrunner.providers.streaming`
(docs/streaming.md), as over the aiohttp transport. Its ``response_json`` is then the message the events
add up to (the wire carried events, not one JSON document).

Reading a message (usage, text) is :mod:`batchrunner.providers.anthropic_wire`'s, which the aiohttp
transport (:mod:`batchrunner.providers.anthropic_http`) shares.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

import anthropic

from batchrunner.errors import PermanentError, ProviderError
from batchrunner.models import Endpoint
from batchrunner.providers.anthropic_wire import SERVED, AnthropicAnswers, needs_streaming, streamed_body
from batchrunner.providers.base import ProviderRequest, ProviderResponse
from batchrunner.providers.catalog import ANTHROPIC_BASE_URL
from batchrunner.providers.errors import (
    error_from_response,
    redact,
    safe_cause,
    transport_error,
)
from batchrunner.providers.headers import anthropic_rate_limits
from batchrunner.providers.streaming import StreamedBody
from batchrunner.secret import Secret

__all__ = ["STREAMED_RESPONSE", "AnthropicProvider", "needs_streaming"]

STREAMED_RESPONSE: Final = {"X-Stainless-Raw-Response": "stream"}
"""The request header by which the SDK returns a response with its body unread (its
``RAW_RESPONSE_HEADER`` set to ``"stream"``; a unit test checks the name against the installed SDK's)."""


class AnthropicProvider:
    """The Anthropic Messages API; see the module docstring for what it promises."""

    def __init__(
        self,
        *,
        api_key: str | Secret,
        base_url: str | None = None,
        name: str = "anthropic",
        connect_timeout_s: float = 10.0,
        timeout_s: float = 600.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, Secret) else api_key
        self.name = name
        self._secrets = (key,)
        self._connect_timeout_s = connect_timeout_s
        self._answers = AnthropicAnswers(name, self._secrets)
        # base_url is always passed: the SDK would otherwise read ANTHROPIC_BASE_URL itself (STYLE habit 19).
        self._client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=base_url or ANTHROPIC_BASE_URL,
            max_retries=0,
            timeout=anthropic.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            default_headers=dict(headers or {}),
        )

    def __repr__(self) -> str:
        return f"AnthropicProvider(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def call(self, request: ProviderRequest) -> ProviderResponse:
        """Send one request; return the parsed answer or raise a ``ProviderError`` subclass."""
        if request.endpoint not in SERVED:
            raise PermanentError(
                f"{self.name}: endpoint {request.endpoint} is not served by the Anthropic adapter"
            )
        if needs_streaming(request.body):
            return await self._call_streamed(request)
        request.sent()  # the SDK cannot tell when its request leaves: just before is the closest
        try:
            raw = await self._client.post(
                Endpoint.MESSAGES.value,
                body=request.body,
                cast_to=anthropic.AsyncAPIResponse[bytes],
                options={"timeout": self._timeout(request.timeout_s)},
            )
            text = await raw.text()
        except anthropic.AnthropicError as exc:
            raise self._sdk_error(exc, request.timeout_s) from safe_cause(exc, self._secrets)
        return self._answers.response(raw.status_code, raw.headers, text)

    async def _call_streamed(self, request: ProviderRequest) -> ProviderResponse:
        """Post the request streamed and add its events up (see the module docstring)."""
        started = time.perf_counter()
        request.sent()
        try:
            raw = await self._client.post(
                Endpoint.MESSAGES.value,
                body=streamed_body(request.body),
                cast_to=anthropic.AsyncAPIResponse[bytes],
                options={"timeout": self._timeout(request.timeout_s), "headers": STREAMED_RESPONSE},
            )
        except anthropic.AnthropicError as exc:
            raise self._sdk_error(exc, request.timeout_s) from safe_cause(exc, self._secrets)
        body = StreamedBody(
            lines=raw.iter_lines(), text=raw.text, started=started, timeout_s=request.timeout_s
        )
        try:
            return await self._answers.streamed_response(raw.status_code, raw.headers, body)
        finally:
            await raw.close()

    def _timeout(self, timeout_s: float) -> anthropic.Timeout:
        return anthropic.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s))

    def _sdk_error(self, exc: anthropic.AnthropicError, timeout_s: float) -> ProviderError:
        """Translate an SDK exception."""
        if isinstance(exc, anthropic.APIStatusError):
            headers = exc.response.headers
            return error_from_response(
                self.name,
                status=exc.status_code,
                headers=headers,
                body=exc.body,
                request_id=exc.request_id,
                rate_limits=anthropic_rate_limits(headers, now=time.time()),
                secrets=self._secrets,
                now=time.time(),
            )
        if isinstance(exc, anthropic.APIConnectionError):  # APITimeoutError is a subclass, told apart here
            timed_out = isinstance(exc, anthropic.APITimeoutError)
            return transport_error(
                self.name, exc.__cause__, timed_out=timed_out, timeout_s=timeout_s, secrets=self._secrets
            )
        # Not an HTTP outcome (the SDK refused the call itself): retrying would fail the same way.
        return PermanentError(redact(f"{self.name}: {type(exc).__name__}: {exc}", self._secrets))
