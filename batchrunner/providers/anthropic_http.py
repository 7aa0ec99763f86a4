"""The Anthropic adapter over the ``http`` transport: the same promises as
:mod:`batchrunner.providers.anthropic`, with HTTP spoken through aiohttp (:mod:`batchrunner.providers.http`
says why) instead of ``anthropic.AsyncAnthropic``.

What the SDK did and this module does itself: ``x-api-key`` and ``anthropic-version`` (the SDK's
version, :data:`ANTHROPIC_VERSION`, checked against it by a unit test); the base URL rules; the body
sent as queued; the status error from a >= 400 answer, classified by
:func:`~batchrunner.providers.errors.error_from_response` (status, decoded body, ``x-should-retry``,
``Retry-After``); ``request-id`` and the ``anthropic-ratelimit-*`` headers; the exact answer text as
``response_json``.

**Streamed requests go through the SDK.** A request the SDK would refuse to send without streaming
(:func:`~batchrunner.providers.anthropic_wire.needs_streaming`: ``max_tokens`` above ~21k, or
``"stream": true``) is handed to an SDK adapter built on first need, which aggregates the events into the
final message as today. Such requests are long by definition (minutes each), so the SDK's cost per call
does not matter there, and its event aggregation stays the one reference.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from batchrunner.errors import PermanentError
from batchrunner.models import Endpoint
from batchrunner.providers.anthropic_wire import SERVED, AnthropicAnswers, needs_streaming
from batchrunner.providers.base import ProviderRequest, ProviderResponse
from batchrunner.providers.catalog import ANTHROPIC_BASE_URL
from batchrunner.providers.errors import error_from_response
from batchrunner.providers.headers import anthropic_rate_limits
from batchrunner.providers.http import HttpSession, error_body
from batchrunner.secret import Secret

if TYPE_CHECKING:
    from batchrunner.providers.anthropic import AnthropicProvider

__all__ = ["ANTHROPIC_VERSION", "AnthropicHTTPProvider"]

ANTHROPIC_VERSION: Final = "2026-10-21"
"""The ``anthropic-version`` header the installed SDK sends (its ``ANTHROPIC_API_VERSION``)."""


class AnthropicHTTPProvider:
    """The Anthropic Messages API over one shared aiohttp session (streamed requests: the SDK's)."""

    def __init__(
        self,
        *,
        api_key: str | Secret,
        base_url: str | None = None,
        name: str = "anthropic",
        connect_timeout_s: float = 10.0,
        timeout_s: float = 600.0,
        max_connections: int = 100,
    ) -> None:
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        key = self._key.get_secret_value()
        self.name = name
        self._secrets = (key,)
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._answers = AnthropicAnswers(name, self._secrets)
        self._http = HttpSession(
            name=name,
            base_url=base_url or ANTHROPIC_BASE_URL,
            headers={"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION},
            secrets=self._secrets,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )
        self._streaming: AnthropicProvider | None = None

    def __repr__(self) -> str:
        return f"AnthropicHTTPProvider(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def aclose(self) -> None:
        """Close the HTTP connection pool (and the SDK adapter's, if a streamed request built it)."""
        await self._http.aclose()
        if self._streaming is not None:
            await self._streaming.aclose()

    async def call(self, request: ProviderRequest) -> ProviderResponse:
        """Send one request; return the parsed answer or raise a ``ProviderError`` subclass."""
        if request.endpoint not in SERVED:
            raise PermanentError(
                f"{self.name}: endpoint {request.endpoint} is not served by the Anthropic adapter"
            )
        if needs_streaming(request.body):
            return await self._streamer().call(request)
        posted = await self._http.post(Endpoint.MESSAGES.value, request.body, request.timeout_s)
        headers = posted.headers
        if posted.status >= 400:
            now = time.time()
            raise error_from_response(
                self.name,
                status=posted.status,
                headers=headers,
                body=error_body(posted.text, unwrap=False),
                request_id=headers.get("request-id"),
                rate_limits=anthropic_rate_limits(headers, now=now),
                secrets=self._secrets,
                now=now,
            )
        return self._answers.response(posted.status, headers, posted.text)

    def _streamer(self) -> AnthropicProvider:
        if self._streaming is None:
            from batchrunner.providers.anthropic import AnthropicProvider

            self._streaming = AnthropicProvider(
                api_key=self._key,
                base_url=self._http.base_url,
                name=self.name,
                connect_timeout_s=self._connect_timeout_s,
                timeout_s=self._timeout_s,
            )
        return self._streaming
