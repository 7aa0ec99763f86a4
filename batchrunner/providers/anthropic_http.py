"""The Anthropic adapter over the ``http`` transport: the same promises as
:mod:`batchrunner.providers.anthropic`, with HTTP spoken through aiohttp (:mod:`batchrunner.providers.http`
says why) instead of ``anthropic.AsyncAnthropic``.

What the SDK did and this module does itself: ``x-api-key`` and ``anthropic-version`` (the SDK's
version, :data:`ANTHROPIC_VERSION`, checked against it by a unit test); the base URL rules; the body
sent as queued; the status error from a >= 400 answer, classified by
:func:`~batchrunner.providers.errors.error_from_response` (status, decoded body, ``x-should-retry``,
``Retry-After``); ``request-id`` and the ``anthropic-ratelimit-*`` headers; the exact answer text as
``response_json``.

**Streamed requests**: a request the SDK would refuse to send without streaming
(:func:`~batchrunner.providers.anthropic_wire.needs_streaming`: ``max_tokens`` above ~21k, or
``"stream": true``) is sent streamed, and its events added up by :mod:`batchrunner.providers.streaming`
(docs/streaming.md), exactly as the SDK transport does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

from batchrunner.errors import PermanentError, ProviderError
from batchrunner.models import Endpoint
from batchrunner.providers.anthropic_wire import SERVED, AnthropicAnswers, needs_streaming, streamed_body
from batchrunner.providers.base import ProviderRequest, ProviderResponse
from batchrunner.providers.catalog import ANTHROPIC_BASE_URL
from batchrunner.providers.errors import error_from_response
from batchrunner.providers.headers import anthropic_rate_limits
from batchrunner.providers.http import HttpSession, Posted, error_body
from batchrunner.secret import Secret

__all__ = ["ANTHROPIC_VERSION", "AnthropicHTTPProvider"]

ANTHROPIC_VERSION: Final = "2026-10-21"
"""The ``anthropic-version`` header the installed SDK sends (its ``ANTHROPIC_API_VERSION``)."""


class AnthropicHTTPProvider:
    """The Anthropic Messages API over one shared aiohttp session."""

    def __init__(
        self,
        *,
        api_key: str | Secret,
        base_url: str | None = None,
        name: str = "anthropic",
        connect_timeout_s: float = 10.0,
        timeout_s: float = 600.0,
        max_connections: int = 100,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        del timeout_s  # every call carries its own (ProviderRequest.timeout_s)
        key = api_key.get_secret_value() if isinstance(api_key, Secret) else api_key
        self.name = name
        self._secrets = (key,)
        self._answers = AnthropicAnswers(name, self._secrets)
        self._http = HttpSession(
            name=name,
            base_url=base_url or ANTHROPIC_BASE_URL,
            headers={**(headers or {}), "x-api-key": key, "anthropic-version": ANTHROPIC_VERSION},
            secrets=self._secrets,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )

    def __repr__(self) -> str:
        return f"AnthropicHTTPProvider(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def call(self, request: ProviderRequest) -> ProviderResponse:
        """Send one request; return the parsed answer or raise a ``ProviderError`` subclass."""
        if request.endpoint not in SERVED:
            raise PermanentError(
                f"{self.name}: endpoint {request.endpoint} is not served by the Anthropic adapter"
            )
        if needs_streaming(request.body):
            return await self._call_streamed(request)
        posted = await self._http.post(
            Endpoint.MESSAGES.value, request.body, request.timeout_s, request.on_sent
        )
        if posted.status >= 400:
            raise self._status_error(posted)
        return self._answers.response(posted.status, posted.headers, posted.text)

    async def _call_streamed(self, request: ProviderRequest) -> ProviderResponse:
        """Post the request streamed and add its events up (docs/streaming.md)."""
        started = time.perf_counter()
        response = await self._http.open(
            Endpoint.MESSAGES.value, streamed_body(request.body), request.timeout_s, request.on_sent
        )
        try:
            if response.status >= 400:
                raise self._status_error(await self._http.read(response, request.timeout_s))
            body = self._http.streamed_body(response, started, request.timeout_s)
            return await self._answers.streamed_response(response.status, response.headers, body)
        finally:
            response.release()

    def _status_error(self, posted: Posted) -> ProviderError:
        headers = posted.headers
        now = time.time()
        return error_from_response(
            self.name,
            status=posted.status,
            headers=headers,
            body=error_body(posted.text, unwrap=False),
            request_id=headers.get("request-id"),
            rate_limits=anthropic_rate_limits(headers, now=now),
            secrets=self._secrets,
            now=now,
        )
