"""Anthropic's Message Batches API as a :class:`~batchrunner.providers.batchapi.BatchApi`, over aiohttp
(docs/batch-wire.md "Anthropic").

- **Lines**: ``{"custom_id", "params": BODY}``, the stored body embedded as it is (``stream`` taken out);
  a custom_id must match ``^[a-zA-Z0-9_-]{1,64}$``.
- **Create**: ``POST /v1/messages/batches`` with ``{"requests": [line, line, ...]}`` streamed from the
  file the engine wrote (the lines joined by commas as they are read, ``Content-Length`` known up front),
  so a 100,000-request body is never held in memory. There are no files: :meth:`upload` and
  :meth:`find_upload` return ``None``.
- **Recovery**: a batch carries no metadata, so :meth:`find` pages ``GET /v1/messages/batches`` (newest
  first) back to the local row's time less :data:`CLOCK_SKEW` and keeps those with the local batch's
  request count.
- **Results**: ``GET /v1/messages/batches/{id}/results``, read line by line. ``succeeded`` becomes the
  ``ProviderResponse`` :class:`~batchrunner.providers.anthropic_wire.AnthropicAnswers` builds from the same
  message in real time; ``errored`` the ``ProviderError`` of the same class, classified from the error's
  ``type`` (a result line carries no HTTP status, so the type's usual status stands in for it:
  :data:`STATUS_OF`); ``expired`` and ``canceled`` are EXPIRED and CANCELED.

Headers as the realtime adapter sends them: ``x-api-key`` and ``anthropic-version``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from batchrunner.errors import InvalidResponse, ProviderError
from batchrunner.models import Endpoint
from batchrunner.providers.anthropic_http import ANTHROPIC_VERSION
from batchrunner.providers.anthropic_wire import AnthropicAnswers
from batchrunner.providers.base import ProviderResponse
from batchrunner.providers.batchapi import ANTHROPIC_LIMITS, LineKind, LineOutcome, RemoteBatch
from batchrunner.providers.batchcalls import BatchCalls
from batchrunner.providers.catalog import ANTHROPIC_BASE_URL
from batchrunner.providers.errors import error_from_response, redact
from batchrunner.providers.headers import anthropic_rate_limits
from batchrunner.providers.http import HttpSession, streamed
from batchrunner.providers.registry import ProviderSettings

__all__ = ["CLOCK_SKEW", "STATUS_OF", "AnthropicBatchApi", "requests_body"]

CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far the provider's clock may be behind ours when recovery looks for batches created since a time."""

CUSTOM_ID: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
STATUS_OF: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""The HTTP status an Anthropic error type comes with, for an errored result line (which has none)."""

_PATH: Final = "v1/messages/batches"
_CHUNK: Final = 1 << 18
_HEAD: Final = b'{"requests":['
_TAIL: Final = b"]}"
_PAGE: Final = 100


async def requests_body(path: Path) -> tuple[AsyncIterator[bytes], int]:
    """``{"requests":[...]}`` from a file of lines (each ``b"...\\n"``), as chunks read from disk, and its
    length in bytes: the newline after each line but the last becomes a comma. No file stays open between
    two chunks, so the iterator may be abandoned (a server that refuses the body before reading it)."""
    length = await asyncio.to_thread(_body_length, path)

    async def chunks() -> AsyncIterator[bytes]:
        yield _HEAD
        offset, pending = 0, b""
        while chunk := await asyncio.to_thread(_read_at, path, offset):
            offset += len(chunk)
            data = pending + chunk
            pending = data[-1:]
            yield data[:-1].replace(b"\n", b",")
        yield (b"" if pending == b"\n" else pending) + _TAIL

    return chunks(), length


def _read_at(path: Path, offset: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(_CHUNK)


def _body_length(path: Path) -> int:
    size = path.stat().st_size
    ends_with_newline = False
    if size:
        with path.open("rb") as handle:
            handle.seek(size - 1)
            ends_with_newline = handle.read(1) == b"\n"
    return len(_HEAD) + size - (1 if ends_with_newline else 0) + len(_TAIL)


class AnthropicBatchApi:
    """One Anthropic provider's Message Batches API."""

    limits = ANTHROPIC_LIMITS

    def __init__(self, settings: ProviderSettings) -> None:
        assert settings.api_key is not None
        key = settings.api_key.get_secret_value()
        self.name = settings.name
        self._secrets = (key,)
        self._answers = AnthropicAnswers(settings.name, self._secrets)
        http = HttpSession(
            name=settings.name,
            base_url=settings.base_url or ANTHROPIC_BASE_URL,
            headers={**settings.headers, "x-api-key": key, "anthropic-version": ANTHROPIC_VERSION},
            secrets=self._secrets,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections=4,
        )
        self._calls = BatchCalls(
            http,
            secrets=self._secrets,
            timeout_s=settings.timeout_s,
            request_id_header="request-id",
            rate_limits=lambda headers: anthropic_rate_limits(headers, now=time.time()),
            unwrap=False,
        )

    def __repr__(self) -> str:
        return f"AnthropicBatchApi(name={self.name!r}, base_url={self._calls.http.base_url!r})"

    def line(self, custom_id: str, endpoint: str, body_json: str) -> bytes:
        if endpoint != Endpoint.MESSAGES.value:
            raise ValueError(f"endpoint {endpoint} cannot be sent in an Anthropic message batch")
        if not CUSTOM_ID.match(custom_id):
            raise ValueError(f"custom_id {custom_id!r} does not match ^[a-zA-Z0-9_-]{{1,64}}$")
        body = body_json
        if '"stream"' in body or "\n" in body:
            decoded = json.loads(body)
            decoded.pop("stream", None)
            body = json.dumps(decoded, ensure_ascii=False, separators=(",", ":"))
        return ('{"custom_id": ' + json.dumps(custom_id) + ', "params": ' + body + "}\n").encode()

    async def upload(self, local_id: str, path: Path) -> str | None:
        del local_id, path
        return None

    async def find_upload(self, local_id: str) -> str | None:
        del local_id
        return None

    async def create(self, local_id: str, endpoint: str, path: Path, file_id: str | None) -> RemoteBatch:
        del local_id, file_id
        if endpoint != Endpoint.MESSAGES.value:
            raise ValueError(f"endpoint {endpoint} cannot be sent in an Anthropic message batch")
        chunks, length = await requests_body(path)
        return self._remote(await self._calls.json("POST", _PATH, body=streamed(chunks, length)))

    async def find(self, local_id: str, created_after: datetime, request_count: int) -> list[RemoteBatch]:
        del local_id  # Anthropic batches carry no metadata
        cutoff = created_after - CLOCK_SKEW
        found: list[RemoteBatch] = []
        after: str | None = None
        while True:
            params = {"limit": str(_PAGE)} | ({"after_id": after} if after else {})
            page = await self._calls.json("GET", _PATH, params=params)
            data = [item for item in page.get("data") or [] if isinstance(item, dict)]
            for item in data:
                batch = self._remote(item)
                if batch.created_at < cutoff:
                    return found
                if batch.total == request_count:
                    found.append(batch)
            last = page.get("last_id")
            if not data or page.get("has_more") is not True or not isinstance(last, str):
                return found
            after = last

    async def get(self, batch_id: str) -> RemoteBatch:
        return self._remote(await self._calls.json("GET", f"{_PATH}/{batch_id}"))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        try:
            return self._remote(await self._calls.json("POST", f"{_PATH}/{batch_id}/cancel"))
        except ProviderError as exc:
            if exc.status_code != 409:
                raise
            batch = await self.get(batch_id)  # a batch that has ended cannot be canceled: 409
            if not batch.ended:
                raise
            return batch

    async def results(self, batch: RemoteBatch) -> AsyncIterator[LineOutcome]:
        current = await self.get(batch.id)
        if not current.ended:
            raise ValueError(f"{self.name}: batch {batch.id} has not ended (status {current.status})")
        async for text in self._calls.lines(f"{_PATH}/{batch.id}/results"):
            yield self._outcome(text)

    def _outcome(self, text: str) -> LineOutcome:
        try:
            line = json.loads(text)
            custom_id = line["custom_id"]
            result = line["result"]
            kind = result["type"]
        except (ValueError, KeyError, TypeError):
            raise self._bad_line(text) from None
        if not isinstance(custom_id, str):
            raise self._bad_line(text)
        if kind == "succeeded":
            message = result.get("message")
            body = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
            try:
                answer = self._answers.response(200, {"content-type": "application/json"}, body)
            except ProviderError as exc:
                return _outcome(custom_id, LineKind.ERRORED, text, error=exc)
            return _outcome(custom_id, LineKind.SUCCEEDED, text, response=answer)
        if kind == "errored":
            return _outcome(custom_id, LineKind.ERRORED, text, error=self._error(result.get("error")))
        if kind in ("expired", "canceled"):
            return _outcome(custom_id, LineKind(kind), text)
        raise self._bad_line(text)

    def _error(self, body: Any) -> ProviderError:
        inner = body.get("error") if isinstance(body, dict) else None
        error_type = inner.get("type") if isinstance(inner, dict) else None
        request_id = body.get("request_id") if isinstance(body, dict) else None
        return error_from_response(
            self.name,
            status=STATUS_OF.get(str(error_type), 500),
            headers={},
            body=body,
            request_id=request_id if isinstance(request_id, str) else None,
            rate_limits=None,
            secrets=self._secrets,
            now=time.time(),
        )

    def _bad_line(self, text: str) -> ProviderError:
        return InvalidResponse(
            redact(f"{self.name}: a result line that cannot be read: {text[:80]!r}", self._secrets)
        )

    def _remote(self, data: dict[str, Any]) -> RemoteBatch:
        batch_id = data.get("id")
        if not isinstance(batch_id, str) or not batch_id:
            raise InvalidResponse(f"{self.name}: the batch API's answer has no 'id'")
        raw_counts = data.get("request_counts")
        counts = raw_counts if isinstance(raw_counts, dict) else {}
        names = ("processing", "succeeded", "errored", "expired", "canceled")
        processing, succeeded, errored, expired, canceled = (_count(counts.get(name)) for name in names)
        status = str(data.get("processing_status"))
        return RemoteBatch(
            id=batch_id,
            status=status,
            ended=status == "ended",
            total=processing + succeeded + errored + expired + canceled,
            succeeded=succeeded,
            errored=errored,
            expired=expired,
            canceled=canceled,
            created_at=_datetime(data.get("created_at")),
            local_id=None,
        )

    async def aclose(self) -> None:
        await self._calls.http.aclose()


def _outcome(
    custom_id: str,
    kind: LineKind,
    text: str,
    *,
    response: ProviderResponse | None = None,
    error: ProviderError | None = None,
) -> LineOutcome:
    return LineOutcome(custom_id=custom_id, kind=kind, response=response, error=error, raw_line=text)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _datetime(value: object) -> datetime:
    """An RFC 3339 time as a UTC datetime (the epoch when it is missing or unreadable)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.fromtimestamp(0, UTC)
