"""OpenAI's Files and Batch API on the fake server (docs/batch-wire.md "OpenAI").

``POST /v1/files`` (multipart; a ``batch`` file has every line checked: a JSON object with ``custom_id``,
``method: POST``, ``url`` and ``body``), ``GET /v1/files`` (newest first, ``purpose``, ``order``, ``limit``,
``after``), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``; ``POST /v1/batches``, ``GET
/v1/batches`` (newest first, ``limit``, ``after``), ``GET /v1/batches/{id}``, ``POST
/v1/batches/{id}/cancel``. Validation (different models, a ``url`` that is not the batch's endpoint, a
repeated ``custom_id``, ``[[batch:invalid]]`` in a prompt, more than 50,000 lines) fails the batch with
``errors.data``, after it was ``validating`` for a moment, as the real API does.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import BodyPartReader, web

from batchrunner.fakeserver import batchlines
from batchrunner.fakeserver.batchhttp import (
    BATCHES,
    ApiError,
    BatchState,
    guarded,
    json_response,
    jsonl_response,
    loads,
    page_limit,
)
from batchrunner.fakeserver.batchstore import VALIDATE_SHARE, Batch, Phase, StoredFile, Timeline
from batchrunner.fakeserver.prompts import Api

ENDPOINTS: Final = {api.value: api for api in (Api.CHAT, Api.EMBEDDINGS, Api.RESPONSES)}
MAX_REQUESTS: Final = 50_000
MAX_UPLOAD_BYTES: Final = 512 * 1000 * 1000
_DAY: Final = 24 * 3600


def add_routes(router: web.UrlDispatcher) -> None:
    for method, path, handler in (
        ("POST", "/v1/files", _upload),
        ("GET", "/v1/files", _list_files),
        ("GET", "/v1/files/{file_id}", _get_file),
        ("GET", "/v1/files/{file_id}/content", _file_content),
        ("POST", "/v1/batches", _create),
        ("GET", "/v1/batches", _list_batches),
        ("GET", "/v1/batches/{batch_id}", _get_batch),
        ("POST", "/v1/batches/{batch_id}/cancel", _cancel),
    ):
        router.add_route(method, path, guarded(handler, anthropic=False))


# --- files ------------------------------------------------------------------------------------------


async def _upload(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    purpose, filename, data = await _read_form(request)
    if purpose == "batch":
        _check_batch_file(data)
    stored = state.store.add_file(filename, purpose, data, state.clock())
    state.books.files += 1
    return json_response(stored.describe())


async def _read_form(request: web.Request) -> tuple[str, str, bytes]:
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "The request must be multipart/form-data with a 'file' and a 'purpose'.")
    reader = await request.multipart()
    purpose: str | None = None
    filename: str | None = None
    data: bytes | None = None
    async for part in reader:
        if not isinstance(part, BodyPartReader):  # pragma: no cover - nested multipart
            continue
        if part.name == "purpose":
            purpose = (await part.text()).strip()
        elif part.name == "file":
            filename = part.filename or "upload.jsonl"
            data = await _read_part(part)
    if purpose is None:
        raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
    if data is None or filename is None:
        raise ApiError(400, "Missing required parameter: 'file'.", param="file")
    return purpose, filename, data


async def _read_part(part: BodyPartReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(1 << 20):
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"File exceeds the maximum size of {MAX_UPLOAD_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_batch_file(data: bytes) -> None:
    rows = data.splitlines()
    if not any(row.strip() for row in rows):
        raise ApiError(400, "Invalid file format for Batch API: the file is empty.", param="file")
    for number, row in enumerate(rows, start=1):
        problem = _line_problem(row)
        if problem is not None:
            raise ApiError(400, f"Invalid file format for Batch API. Line {number}: {problem}", param="file")


def _line_problem(row: bytes) -> str | None:
    try:
        line = json.loads(row)
    except ValueError:
        return "the line is not valid JSON."
    if not isinstance(line, dict):
        return "the line must be a JSON object."
    if not isinstance(line.get("custom_id"), str) or not line["custom_id"]:
        return "'custom_id' must be a non-empty string."
    if line.get("method") != "POST":
        return "'method' must be 'POST'."
    if not isinstance(line.get("url"), str):
        return "'url' must be a string."
    if not isinstance(line.get("body"), dict):
        return "'body' must be a JSON object."
    return None


def _file(state: BatchState, file_id: str) -> StoredFile:
    stored = state.store.files.get(file_id)
    if stored is None:
        raise ApiError(404, f"No such File object: {file_id}", param="id")
    return stored


async def _get_file(request: web.Request) -> web.Response:
    return json_response(_file(request.app[BATCHES], request.match_info["file_id"]).describe())


async def _file_content(request: web.Request) -> web.Response:
    return jsonl_response(_file(request.app[BATCHES], request.match_info["file_id"]).data)


async def _list_files(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    purpose = request.query.get("purpose")
    files = [f for f in state.store.files.values() if purpose is None or f.purpose == purpose]
    files.sort(key=lambda f: f.number, reverse=request.query.get("order", "desc") != "asc")
    limit = page_limit(request, 10_000, 10_000)
    return json_response(_page([f.describe() for f in files], request.query.get("after"), limit))


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """A cursor page as the SDK pages it: the items after ``after``, ``has_more``, first and last ids."""
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


# --- batches ----------------------------------------------------------------------------------------


async def _create(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    params = loads(await request.read())
    if not isinstance(params, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    endpoint, file_id, metadata = _create_params(state, params)
    rows = [json.loads(row) for row in state.store.files[file_id].data.splitlines() if row.strip()]
    errors = _validation_errors(rows, state.store.files[file_id].data.splitlines(), endpoint)
    now = state.clock()
    seconds = state.config.batch_seconds
    timeline = Timeline(
        created=now,
        size=len(rows),
        seconds=seconds,
        validate_s=VALIDATE_SHARE * seconds,
        finalize_s=VALIDATE_SHARE * seconds,
        expire_fraction=state.config.batch_expire_fraction,
        invalid=bool(errors),
    )
    api = ENDPOINTS[endpoint]
    lines = [] if errors else [_answer(state, api, row) for row in rows]
    model = rows[0]["body"].get("model") if rows else None
    state.books.batch("openai", failed=bool(errors))
    batch = Batch(
        id=f"batch_{state.next_id()}",
        api="openai",
        number=state.store.number(),
        timeline=timeline,
        lines=lines,
        endpoint=endpoint,
        model=model if isinstance(model, str) else None,
        input_file_id=file_id,
        metadata=metadata,
        errors=errors,
    )
    state.store.add_batch(batch)
    return json_response(describe(state, batch))


def _create_params(state: BatchState, params: dict[str, Any]) -> tuple[str, str, dict[str, str] | None]:
    endpoint = params.get("endpoint")
    if endpoint not in ENDPOINTS:
        known = ", ".join(ENDPOINTS)
        raise ApiError(400, f"Invalid endpoint {endpoint!r}: supported are {known}.", param="endpoint")
    if params.get("completion_window") != "24h":
        raise ApiError(400, "completion_window must be '24h'.", param="completion_window")
    file_id = params.get("input_file_id")
    if not isinstance(file_id, str):
        raise ApiError(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
    stored = state.store.files.get(file_id)
    if stored is None:
        raise ApiError(404, f"No such File object: {file_id}", param="input_file_id")
    if stored.purpose != "batch":
        raise ApiError(
            400, f"File {file_id} has purpose {stored.purpose!r}, not 'batch'.", param="input_file_id"
        )
    metadata = params.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ApiError(400, "metadata: at most 16 string keys with string values.", param="metadata")
    return endpoint, file_id, metadata


def _validation_errors(rows: list[dict[str, Any]], raw: list[bytes], endpoint: str) -> list[dict[str, Any]]:
    """What makes the whole batch fail, as ``errors.data`` items (the first few)."""
    if len(rows) > MAX_REQUESTS:
        message = f"The batch input file has {len(rows)} requests; at most {MAX_REQUESTS} are allowed."
        return [{"code": "batch_too_large", "message": message, "param": None, "line": None}]
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model = rows[0]["body"].get("model") if rows else None
    raw_rows = [row for row in raw if row.strip()]
    for number, (row, text) in enumerate(zip(rows, raw_rows, strict=True), start=1):
        problem: tuple[str, str] | None = None
        if row["url"] != endpoint:
            problem = (
                "invalid_url",
                f"The url {row['url']!r} does not match the batch endpoint {endpoint!r}.",
            )
        elif row["body"].get("model") != model:
            problem = ("mismatched_model", "All requests of a batch must use the same model.")
        elif row["custom_id"] in seen:
            problem = ("duplicate_custom_id", f"The custom_id {row['custom_id']!r} is not unique.")
        elif batchlines.INVALID_DIRECTIVE.encode() in text:
            problem = (
                "invalid_request",
                "The request is invalid (the prompt asks for it: [[batch:invalid]]).",
            )
        seen.add(row["custom_id"])
        if problem is not None:
            errors.append({"code": problem[0], "message": problem[1], "param": None, "line": number})
        if len(errors) >= 10:
            break
    return errors


def _answer(state: BatchState, api: Api, row: dict[str, Any]) -> batchlines.LineAnswer:
    key = batchlines.prompt_key(api, row["body"], state.config)
    attempt = state.books.place(key)
    return batchlines.answer_line(
        api,
        row["custom_id"],
        row["body"],
        config=state.config,
        ident=state.next_id(),
        attempt=attempt,
        plan_for=state.plan_for,
    )


def _batch(state: BatchState, batch_id: str) -> Batch:
    batch = state.store.batches.get(batch_id)
    if batch is None or batch.api != "openai":
        raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


async def _get_batch(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    return json_response(describe(state, _batch(state, request.match_info["batch_id"])))


async def _list_batches(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    limit = page_limit(request, 20, 100)
    items = [describe(state, batch) for batch in state.store.batches_of("openai")]
    return json_response(_page(items, request.query.get("after"), limit))


async def _cancel(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    batch = _batch(state, request.match_info["batch_id"])
    now = state.clock()
    phase = batch.phase(now)
    if phase.ended:
        raise ApiError(409, f"Cannot cancel a batch with status '{phase.value}'.")
    if batch.cancel_at is None:
        batch.cancel_at = now
    return json_response(describe(state, batch))


def describe(state: BatchState, batch: Batch) -> dict[str, Any]:
    """The ``Batch`` object as the real API reports it at this moment."""
    now = state.clock()
    state.store.settle(batch, now)
    phase = batch.phase(now)
    timeline = batch.timeline
    started = phase not in (Phase.VALIDATING, Phase.FAILED)
    completed, failed = batch.counts(now)
    ended_at = int(batch.ended_at()) if phase.ended else None
    lines_done_at = int(timeline.lines_done_at)
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": "24h",
        "status": phase.value,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(timeline.created),
        "in_progress_at": int(timeline.start) if started else None,
        "expires_at": int(timeline.created) + _DAY,
        "finalizing_at": lines_done_at if phase in (Phase.FINALIZING, Phase.COMPLETED) else None,
        "completed_at": ended_at if phase is Phase.COMPLETED else None,
        "failed_at": ended_at if phase is Phase.FAILED else None,
        "expired_at": ended_at if phase is Phase.EXPIRED else None,
        "cancelling_at": int(batch.cancel_at) if batch.cancel_at is not None else None,
        "cancelled_at": ended_at if phase is Phase.CANCELLED else None,
        "request_counts": {
            "total": timeline.size if started else 0,
            "completed": completed,
            "failed": failed,
        },
        "metadata": batch.metadata,
    }
