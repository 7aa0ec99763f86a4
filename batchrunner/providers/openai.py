"""The OpenAI adapter: chat completions, embeddings and responses through ``openai.AsyncOpenAI``.

Any OpenAI-compatible server works through ``base_url`` (vLLM, Ollama, LiteLLM, and the ``gemini`` and
``cohere`` presets of :mod:`batchrunner.providers.catalog`, which also lists the endpoints served).

Why the generic ``client.post(path, body=...)`` rather than ``client.chat.completions.create(**body)``:
the body is sent exactly as queued (a field this SDK version does not know still reaches the server), one
code path serves every endpoint, and the raw response keeps the headers (request id, rate limits) and the
exact JSON text that is stored as ``response_json``. The client is built with ``max_retries=0``
(batchrunner owns every retry) and each call gets an explicit timeout: ``connect`` from the adapter, the
rest (read, write, pool) from the request's ``timeout_s``. The outer per-attempt deadline is the engine's.

What a 2xx answer must hold, and usage, are read by :mod:`batchrunner.providers.openai_wire`, which
the aiohttp transport (:mod:`batchrunner.providers.openai_http`) shares.

**Streamed chat completions** (``"stream": true``, docs/streaming.md) are posted the same way with the
SDK's streamed-response mode (:data:`STREAMED_RESPONSE`, what ``.with_streaming_response`` sets), so
the SDK still builds the request, raises a status error before any event, and hands over the body's
lines unread; they are added up by :mod:`batchrunner.providers.streaming`, as over the aiohttp transport.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

import openai

from batchrunner.errors import PermanentError, ProviderError
from batchrunner.models import Endpoint
from batchrunner.providers.base import ProviderRequest, ProviderResponse
from batchrunner.providers.catalog import OPENAI_BASE_URL
from batchrunner.providers.errors import error_from_response, redact, safe_cause, transport_error
from batchrunner.providers.headers import openai_rate_limits
from batchrunner.providers.openai_wire import OpenAIAnswers, streamed_body
from batchrunner.providers.streaming import StreamedBody
from batchrunner.secret import Secret

__all__ = ["STREAMED_RESPONSE", "OpenAIProvider"]

STREAMED_RESPONSE: Final = {"X-Stainless-Raw-Response": "stream"}
"""The request header by which the SDK returns a response with its body unread (its
``RAW_RESPONSE_HEADER`` set to ``"stream"``; a unit test checks the name against the installed SDK's)."""


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
        headers: Mapping[str, str] | None = None,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, Secret) else api_key
        self.name = name
        self._secrets = (key,)
        self._connect_timeout_s = connect_timeout_s
        self._answers = OpenAIAnswers(name, self._secrets)
        # base_url is always passed: the SDK would otherwise read OPENAI_BASE_URL itself (STYLE habit 19).
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=base_url or OPENAI_BASE_URL,
            max_retries=0,
            timeout=openai.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            default_headers=dict(headers or {}),
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
        path = self._answers.path(request)
        if request.body.get("stream") is True:
            return await self._call_streamed(path, request)
        timeout = self._timeout(request.timeout_s)
        request.sent()  # the SDK cannot tell when its request leaves: just before is the closest
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
        return self._answers.response(Endpoint(request.endpoint), raw.status_code, raw.headers, text)

    async def _call_streamed(self, path: str, request: ProviderRequest) -> ProviderResponse:
        """Post a streamed chat completion and add its events up (see the module docstring)."""
        started = time.perf_counter()
        request.sent()
        try:
            raw = await self._client.post(
                path,
                body=streamed_body(request.body),
                cast_to=openai.AsyncAPIResponse[bytes],
                options={"timeout": self._timeout(request.timeout_s), "headers": STREAMED_RESPONSE},
            )
        except openai.OpenAIError as exc:
            raise self._sdk_error(exc, request.timeout_s) from safe_cause(exc, self._secrets)
        body = StreamedBody(
            lines=raw.iter_lines(), text=raw.text, started=started, timeout_s=request.timeout_s
        )
        try:
            return await self._answers.streamed_response(
                Endpoint(request.endpoint), raw.status_code, raw.headers, body
            )
        finally:
            await raw.close()

    def _timeout(self, timeout_s: float) -> openai.Timeout:
        return openai.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s))

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
