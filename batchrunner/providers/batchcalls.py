"""The requests of a batch client: JSON answers, downloads line by line, and errors classified as realtime.

Shared by :mod:`batchrunner.providers.openai_batch` and :mod:`batchrunner.providers.anthropic_batch`
over one :class:`~batchrunner.providers.http.HttpSession`. A >= 400 answer of a batch endpoint is
classified by :func:`~batchrunner.providers.errors.error_from_response` exactly as a realtime answer
(``RateLimited`` with ``retry_after``, ``RunStoppingError`` for a bad key ...); a lost connection or a
timeout is the realtime ``TransientError`` / ``ProviderTimeout``; a 2xx that is not the promised JSON
object an ``InvalidResponse``. Every message is redacted (the key is in the session's headers only).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from batchrunner.errors import ProviderError
from batchrunner.models import RateLimitInfo
from batchrunner.providers.errors import error_from_response, invalid_response, json_object
from batchrunner.providers.http import Body, HttpSession, Posted, error_body

__all__ = ["BatchCalls"]


class BatchCalls:
    """One provider's batch-endpoint requests."""

    def __init__(
        self,
        http: HttpSession,
        *,
        secrets: tuple[str, ...],
        timeout_s: float,
        request_id_header: str,
        rate_limits: Callable[[Mapping[str, str]], RateLimitInfo | None],
        unwrap: bool,
    ) -> None:
        self.http = http
        self.name = http.name
        self.secrets = secrets
        self.timeout_s = timeout_s
        self._request_id_header = request_id_header
        self._rate_limits = rate_limits
        self._unwrap = unwrap

    async def json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        body: Body | None = None,
    ) -> dict[str, Any]:
        """The JSON object a batch endpoint answers; a ``ProviderError`` for anything else."""
        response = await self.http.send(
            method,
            path,
            timeout_s=self.timeout_s,
            params=params,
            json_body=json_body,
            body=body,
            long=body is not None,
        )
        try:
            posted = await self.http.read(response, self.timeout_s)
        finally:
            response.release()
        if posted.status >= 400:
            raise self.status_error(posted)
        try:
            return json_object(posted.text, posted.headers.get("content-type"))
        except ValueError as exc:
            raise invalid_response(
                self.name,
                str(exc),
                status=posted.status,
                request_id=posted.headers.get(self._request_id_header),
                rate_limits=None,
                secrets=self.secrets,
            ) from None

    async def lines(self, path: str) -> AsyncIterator[str]:
        """The lines of a download (a file's content, a results file) as they arrive."""
        response = await self.http.send(
            "GET", path, timeout_s=self.timeout_s, headers={"Accept": "application/binary"}, long=True
        )
        try:
            if response.status >= 400:
                raise self.status_error(await self.http.read(response, self.timeout_s))
            async for line in self.http.body_lines(response, self.timeout_s):
                if line.strip():
                    yield line
        finally:
            response.release()

    def status_error(self, posted: Posted) -> ProviderError:
        """The realtime classification of an error answer."""
        headers = posted.headers
        return error_from_response(
            self.name,
            status=posted.status,
            headers=headers,
            body=error_body(posted.text, unwrap=self._unwrap),
            request_id=headers.get(self._request_id_header),
            rate_limits=self._rate_limits(headers),
            secrets=self.secrets,
            now=time.time(),
        )
