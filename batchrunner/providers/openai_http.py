"""The OpenAI adapter over the ``http`` transport: the same promises as
:mod:`batchrunner.providers.openai`, with HTTP spoken through aiohttp (:mod:`batchrunner.providers.http`
says why) instead of ``openai.AsyncOpenAI``.

What the SDK did and this module does itself: ``Authorization: Bearer KEY``; the base URL rules (any
OpenAI-compatible server, a trailing slash or not); the request body sent exactly as queued; the
status error from a >= 400 answer, classified by :func:`~batchrunner.providers.errors.error_from_response`
from the status, the decoded body, ``x-should-retry`` and ``Retry-After``; ``x-request-id`` and the
``x-ratelimit-*`` headers on every answer and error; the exact answer text as ``response_json``.
Reading a 2xx answer is shared with the SDK transport (:mod:`batchrunner.providers.openai_wire`), and
so is adding up a streamed one (:mod:`batchrunner.providers.streaming`, docs/streaming.md).
The ``OpenAI-Organization``/``OpenAI-Project`` headers come from ``OPENAI_ORG_ID``/``OPENAI_PROJECT_ID``
for the ``openai`` preset, read where configuration is resolved (``headers``), as the SDK reads them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from batchrunner.errors import ProviderError
from batchrunner.models import Endpoint
from batchrunner.providers.base import ProviderRequest, ProviderResponse
from batchrunner.providers.catalog import OPENAI_BASE_URL
from batchrunner.providers.errors import error_from_response
from batchrunner.providers.headers import openai_rate_limits
from batchrunner.providers.http import HttpSession, Posted, error_body
from batchrunner.providers.openai_wire import OpenAIAnswers, streamed_body
from batchrunner.secret import Secret

__all__ = ["OpenAIHTTPProvider"]


class OpenAIHTTPProvider:
    """An OpenAI (or OpenAI-compatible) API over one shared aiohttp session."""

    def __init__(
        self,
        *,
        api_key: str | Secret,
        base_url: str | None = None,
        name: str = "openai",
        connect_timeout_s: float = 10.0,
        timeout_s: float = 600.0,
        max_connections: int = 100,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        del timeout_s  # every call carries its own (ProviderRequest.timeout_s)
        key = api_key.get_secret_value() if isinstance(api_key, Secret) else api_key
        self.name = name
        self._secrets = (key,)
        self._answers = OpenAIAnswers(name, self._secrets)
        self._http = HttpSession(
            name=name,
            base_url=base_url or OPENAI_BASE_URL,
            headers={**(headers or {}), "Authorization": f"Bearer {key}"},
            secrets=self._secrets,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )

    def __repr__(self) -> str:
        return f"OpenAIHTTPProvider(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def call(self, request: ProviderRequest) -> ProviderResponse:
        """Send one request; return the parsed answer or raise a ``ProviderError`` subclass."""
        path = self._answers.path(request)
        if request.body.get("stream") is True:
            return await self._call_streamed(path, request)
        posted = await self._http.post(path, request.body, request.timeout_s, request.on_sent)
        if posted.status >= 400:
            raise self._status_error(posted)
        return self._answers.response(Endpoint(request.endpoint), posted.status, posted.headers, posted.text)

    async def _call_streamed(self, path: str, request: ProviderRequest) -> ProviderResponse:
        """Post a streamed chat completion and add its events up (docs/streaming.md)."""
        started = time.perf_counter()
        response = await self._http.open(
            path, streamed_body(request.body), request.timeout_s, request.on_sent
        )
        try:
            if response.status >= 400:
                raise self._status_error(await self._http.read(response, request.timeout_s))
            body = self._http.streamed_body(response, started, request.timeout_s)
            return await self._answers.streamed_response(
                Endpoint(request.endpoint), response.status, response.headers, body
            )
        finally:
            response.release()

    def _status_error(self, posted: Posted) -> ProviderError:
        headers = posted.headers
        return error_from_response(
            self.name,
            status=posted.status,
            headers=headers,
            body=error_body(posted.text, unwrap=True),
            request_id=headers.get("x-request-id"),
            rate_limits=openai_rate_limits(headers),
            secrets=self._secrets,
            now=time.time(),
        )
