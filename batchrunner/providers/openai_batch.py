"""The OpenAI Batch API (and OpenAI-compatible servers that serve ``/v1/files`` and ``/v1/batches``) as a
:class:`~batchrunner.providers.batchapi.BatchApi`, over aiohttp (docs/batch-wire.md "OpenAI").

- **Lines**: ``{"custom_id", "method": "POST", "url": ENDPOINT, "body": BODY}``, the stored body embedded
  as it is (``stream`` and ``stream_options`` taken out: a batch answers whole).
- **Upload**: ``POST /files`` as multipart form data, ``purpose=batch``, the file streamed from disk and
  named ``batchrunner-{local_id}.jsonl``, which is how :meth:`find_upload` finds it again.
- **Create**: ``POST /batches`` with ``{"batchrunner_batch": local_id}`` as metadata, which is how
  :meth:`find` finds a batch whose id was lost; it pages ``GET /batches`` (newest first) back to the
  local row's time less :data:`CLOCK_SKEW`.
- **Results**: the output file, then the error file, read line by line. A 200 line becomes the
  ``ProviderResponse`` :class:`~batchrunner.providers.openai_wire.OpenAIAnswers` builds from the same body
  in real time; a >= 400 line the ``ProviderError`` of the same class; ``batch_expired`` /
  ``batch_cancelled`` error lines are EXPIRED / CANCELED.

Headers as the realtime adapter sends them: ``Authorization: Bearer KEY`` and the organization and project
(``ProviderSettings.headers``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from batchrunner.errors import InvalidResponse, PermanentError, ProviderError
from batchrunner.models import Endpoint
from batchrunner.providers.batchapi import LOCAL_ID_KEY, OPENAI_LIMITS, LineKind, LineOutcome, RemoteBatch
from batchrunner.providers.batchcalls import BatchCalls
from batchrunner.providers.catalog import ENDPOINTS, OPENAI_BASE_URL
from batchrunner.providers.errors import error_body_json, error_from_response, redact
from batchrunner.providers.headers import openai_rate_limits
from batchrunner.providers.http import HttpSession, file_form
from batchrunner.providers.openai_wire import OpenAIAnswers
from batchrunner.providers.registry import ProviderSettings

__all__ = ["CLOCK_SKEW", "OpenAIBatchApi", "upload_name"]

CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far the provider's clock may be behind ours when recovery looks for batches created since a time."""

ENDED: Final = frozenset({"completed", "failed", "expired", "cancelled"})
_SERVED: Final = frozenset(endpoint.value for endpoint in ENDPOINTS["openai"])
_NOT_RUN: Final = {"batch_expired": LineKind.EXPIRED, "batch_cancelled": LineKind.CANCELED}
_PAGE: Final = 100


def upload_name(local_id: str) -> str:
    """The filename an input file is uploaded under (what :meth:`OpenAIBatchApi.find_upload` looks for)."""
    return f"batchrunner-{local_id}.jsonl"


def batch_line(custom_id: str, endpoint: str, body_json: str) -> bytes:
    """One OpenAI Batch input line; ``ValueError`` for an endpoint the Batch API is not used for here."""
    if endpoint not in _SERVED:
        raise ValueError(f"endpoint {endpoint} cannot be sent in an OpenAI batch")
    body = body_json
    if '"stream' in body or "\n" in body:
        decoded = json.loads(body)
        decoded.pop("stream", None)
        decoded.pop("stream_options", None)
        body = json.dumps(decoded, ensure_ascii=False, separators=(",", ":"))
    head = json.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint}, ensure_ascii=False)
    return (head[:-1] + ', "body": ' + body + "}\n").encode()


class OpenAIBatchApi:
    """One OpenAI provider's Files and Batch API."""

    limits = OPENAI_LIMITS

    def __init__(self, settings: ProviderSettings) -> None:
        assert settings.api_key is not None
        key = settings.api_key.get_secret_value()
        self.name = settings.name
        self._secrets = (key,)
        self._answers = OpenAIAnswers(settings.name, self._secrets)
        http = HttpSession(
            name=settings.name,
            base_url=settings.base_url or OPENAI_BASE_URL,
            headers={**settings.headers, "Authorization": f"Bearer {key}"},
            secrets=self._secrets,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections=4,
        )
        self._calls = BatchCalls(
            http,
            secrets=self._secrets,
            timeout_s=settings.timeout_s,
            request_id_header="x-request-id",
            rate_limits=openai_rate_limits,
            unwrap=True,
        )

    def __repr__(self) -> str:
        return f"OpenAIBatchApi(name={self.name!r}, base_url={self._calls.http.base_url!r})"

    def line(self, custom_id: str, endpoint: str, body_json: str) -> bytes:
        return batch_line(custom_id, endpoint, body_json)

    async def upload(self, local_id: str, path: Path) -> str | None:
        form = file_form(
            path,
            field_name="file",
            filename=upload_name(local_id),
            content_type="application/jsonl",
            fields={"purpose": "batch"},
        )
        uploaded = await self._calls.json("POST", "files", body=form)
        return _string(uploaded, "id", self.name)

    async def find_upload(self, local_id: str) -> str | None:
        wanted = upload_name(local_id)
        after: str | None = None
        while True:
            params = {"purpose": "batch", "limit": "10000", "order": "desc"} | (
                {"after": after} if after else {}
            )
            page = await self._calls.json("GET", "files", params=params)
            data = [item for item in page.get("data") or [] if isinstance(item, dict)]
            for item in data:
                if item.get("filename") == wanted and isinstance(item.get("id"), str):
                    return str(item["id"])
            if not data or page.get("has_more") is not True:
                return None
            after = str(data[-1].get("id"))

    async def create(self, local_id: str, endpoint: str, path: Path, file_id: str | None) -> RemoteBatch:
        del path  # the file was uploaded
        if file_id is None:
            raise ValueError("an OpenAI batch is created from an uploaded file: file_id is required")
        created = await self._calls.json(
            "POST",
            "batches",
            json_body={
                "input_file_id": file_id,
                "endpoint": endpoint,
                "completion_window": "24h",
                "metadata": {LOCAL_ID_KEY: local_id},
            },
        )
        return self._remote(created)

    async def find(self, local_id: str, created_after: datetime, request_count: int) -> list[RemoteBatch]:
        del request_count  # the metadata names the local batch
        cutoff = created_after - CLOCK_SKEW
        found: list[RemoteBatch] = []
        async with contextlib.aclosing(self._list()) as batches:
            async for batch in batches:
                if batch.created_at < cutoff:
                    break
                if batch.local_id == local_id:
                    found.append(batch)
        return found

    async def _list(self) -> AsyncGenerator[RemoteBatch]:
        """Every batch, newest first, page by page."""
        after: str | None = None
        while True:
            params = {"limit": str(_PAGE)} | ({"after": after} if after else {})
            page = await self._calls.json("GET", "batches", params=params)
            data = [item for item in page.get("data") or [] if isinstance(item, dict)]
            for item in data:
                yield self._remote(item)
            if not data or page.get("has_more") is not True:
                return
            after = str(data[-1].get("id"))

    async def get(self, batch_id: str) -> RemoteBatch:
        return self._remote(await self._raw(batch_id))

    async def _raw(self, batch_id: str) -> dict[str, Any]:
        return await self._calls.json("GET", f"batches/{batch_id}")

    async def cancel(self, batch_id: str) -> RemoteBatch:
        try:
            return self._remote(await self._calls.json("POST", f"batches/{batch_id}/cancel"))
        except ProviderError as exc:
            if exc.status_code != 409:
                raise
            batch = await self.get(batch_id)  # a batch that has ended cannot be cancelled: 409
            if not batch.ended:
                raise
            return batch

    async def results(self, batch: RemoteBatch) -> AsyncIterator[LineOutcome]:
        raw = await self._raw(batch.id)
        if raw.get("status") not in ENDED:
            raise ValueError(f"{self.name}: batch {batch.id} has not ended (status {raw.get('status')})")
        endpoint = Endpoint(raw.get("endpoint", Endpoint.CHAT_COMPLETIONS.value))
        for key in ("output_file_id", "error_file_id"):
            file_id = raw.get(key)
            if isinstance(file_id, str) and file_id:
                async for text in self._calls.lines(f"files/{file_id}/content"):
                    yield self._outcome(text, endpoint)

    def _outcome(self, text: str, endpoint: Endpoint) -> LineOutcome:
        """One output- or error-file line as the realtime answer (or error) it stands for."""
        try:
            line = json.loads(text)
            custom_id = line["custom_id"]
            response = line.get("response")
            error = line.get("error")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self._bad_line(text) from None
        if not isinstance(custom_id, str):
            raise self._bad_line(text)
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            return self._answered(custom_id, response, endpoint, text)
        if isinstance(error, dict) and error.get("code") in _NOT_RUN:
            return LineOutcome(
                custom_id=custom_id, kind=_NOT_RUN[error["code"]], response=None, error=None, raw_line=text
            )
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        failure = PermanentError(
            redact(f"{self.name}: batch line error {code}: {message or 'no error message'}", self._secrets),
            error_type=str(code) if code else None,
            error_body=error_body_json(error, str(message or ""), self._secrets) if error else None,
        )
        return LineOutcome(
            custom_id=custom_id, kind=LineKind.ERRORED, response=None, error=failure, raw_line=text
        )

    def _answered(
        self, custom_id: str, response: dict[str, Any], endpoint: Endpoint, text: str
    ) -> LineOutcome:
        status: int = response["status_code"]
        request_id = response.get("request_id")
        request_id = request_id if isinstance(request_id, str) else None
        body = response.get("body")
        if status < 400:
            headers = {"content-type": "application/json"} | (
                {"x-request-id": request_id} if request_id else {}
            )
            body_text = (
                body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            )
            try:
                answer = self._answers.response(endpoint, status, headers, body_text)
            except ProviderError as exc:
                return LineOutcome(
                    custom_id=custom_id, kind=LineKind.ERRORED, response=None, error=exc, raw_line=text
                )
            return LineOutcome(
                custom_id=custom_id, kind=LineKind.SUCCEEDED, response=answer, error=None, raw_line=text
            )
        error = error_from_response(
            self.name,
            status=status,
            headers={},
            body=body.get("error", body) if isinstance(body, dict) else body,
            request_id=request_id,
            rate_limits=None,
            secrets=self._secrets,
            now=time.time(),
        )
        return LineOutcome(
            custom_id=custom_id, kind=LineKind.ERRORED, response=None, error=error, raw_line=text
        )

    def _bad_line(self, text: str) -> ProviderError:
        return InvalidResponse(
            redact(f"{self.name}: a batch result line without a custom_id: {text[:80]!r}", self._secrets)
        )

    def _remote(self, data: dict[str, Any]) -> RemoteBatch:
        status = str(data.get("status"))
        counts = data.get("request_counts") if isinstance(data.get("request_counts"), dict) else {}
        assert isinstance(counts, dict)
        total, completed, failed = (_count(counts.get(name)) for name in ("total", "completed", "failed"))
        rest = max(0, total - completed - failed)
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        assert isinstance(metadata, dict)
        local_id = metadata.get(LOCAL_ID_KEY)
        input_file_id = data.get("input_file_id")
        return RemoteBatch(
            id=_string(data, "id", self.name),
            status=status,
            ended=status in ENDED,
            total=total,
            succeeded=completed,
            errored=failed,
            expired=rest if status == "expired" else 0,
            canceled=rest if status == "cancelled" else 0,
            created_at=datetime.fromtimestamp(_count(data.get("created_at")), UTC),
            local_id=local_id if isinstance(local_id, str) else None,
            input_file_id=input_file_id if isinstance(input_file_id, str) else None,
            failure=self._failure(data) if status == "failed" else None,
        )

    def _failure(self, data: dict[str, Any]) -> str:
        errors = data.get("errors")
        items = errors.get("data") if isinstance(errors, dict) else None
        parts = [
            f"line {item.get('line')}: {item.get('code')}: {item.get('message')}"
            if item.get("line") is not None
            else f"{item.get('code')}: {item.get('message')}"
            for item in (items or [])
            if isinstance(item, dict)
        ]
        return redact(
            f"{self.name}: the batch failed validation: " + ("; ".join(parts) or "no reason given"),
            self._secrets,
        )

    async def aclose(self) -> None:
        await self._calls.http.aclose()


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _string(data: dict[str, Any], key: str, provider: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidResponse(f"{provider}: the batch API's answer has no {key!r}")
    return value
