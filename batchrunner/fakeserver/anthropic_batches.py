"""Anthropic's Message Batches API on the fake server (docs/batch-wire.md "Anthropic").

``POST /v1/messages/batches`` (``{"requests": [{"custom_id", "params"}, ...]}``: at most 100,000 requests
and 256 MB, each ``custom_id`` matching ``^[a-zA-Z0-9_-]{1,64}$`` and unique, else a 400 and no batch),
``GET /v1/messages/batches`` (newest first, ``limit``, ``after_id``, ``before_id``), ``GET
/v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results`` (JSONL, once ended), ``POST
/v1/messages/batches/{id}/cancel``. As the real API says of its ``request_counts``, every request counts as
``processing`` until the whole batch has ended.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from batchrunner.fakeserver import batchlines
from batchrunner.fakeserver.batchhttp import (
    BATCHES,
    ApiError,
    BatchState,
    guarded,
    json_response,
    loads,
    page_limit,
    read_body,
)
from batchrunner.fakeserver.batchstore import Batch, Phase, Timeline
from batchrunner.fakeserver.prompts import Api

MAX_REQUESTS: Final = 100_000
MAX_BYTES: Final = 256 * 1000 * 1000
CUSTOM_ID: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DAY: Final = 24 * 3600


def add_routes(router: web.UrlDispatcher) -> None:
    for method, path, handler in (
        ("POST", "/v1/messages/batches", _create),
        ("GET", "/v1/messages/batches", _list),
        ("GET", "/v1/messages/batches/{batch_id}", _get),
        ("GET", "/v1/messages/batches/{batch_id}/results", _results),
        ("POST", "/v1/messages/batches/{batch_id}/cancel", _cancel),
    ):
        router.add_route(method, path, guarded(handler, anthropic=True))


async def _create(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    raw = await read_body(request, MAX_BYTES)
    requests = _requests(loads(raw))
    if batchlines.INVALID_DIRECTIVE.encode() in raw:
        raise ApiError(400, "requests: the batch is invalid (a prompt asks for it: [[batch:invalid]])")
    now = state.clock()
    timeline = Timeline(
        created=now,
        size=len(requests),
        seconds=state.config.batch_seconds,
        validate_s=0.0,
        finalize_s=0.0,
        expire_fraction=state.config.batch_expire_fraction,
    )
    lines = []
    for item in requests:
        key = batchlines.prompt_key(Api.MESSAGES, item["params"], state.config)
        attempt = state.books.place(key)
        lines.append(
            batchlines.answer_line(
                Api.MESSAGES,
                item["custom_id"],
                item["params"],
                config=state.config,
                ident=state.next_id(),
                attempt=attempt,
                plan_for=state.plan_for,
            )
        )
    state.books.batch("anthropic", failed=False)
    batch = Batch(
        id=f"msgbatch_{state.next_id()}",
        api="anthropic",
        number=state.store.number(),
        timeline=timeline,
        lines=lines,
    )
    state.store.add_batch(batch)
    return json_response(describe(state, batch, request))


def _requests(body: Any) -> list[dict[str, Any]]:
    """The ``requests`` of a create body, checked as the real API checks them (400 otherwise)."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise ApiError(400, "requests: Field required (a non-empty list of requests)")
    if len(requests) > MAX_REQUESTS:
        raise ApiError(400, f"requests: at most {MAX_REQUESTS} requests are allowed, not {len(requests)}")
    seen: set[str] = set()
    for index, item in enumerate(requests):
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            raise ApiError(400, f"requests.{index}: must be an object with 'custom_id' and 'params'")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise ApiError(
                400, f"requests.{index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        if custom_id in seen:
            raise ApiError(400, f"requests.{index}.custom_id: {custom_id!r} is not unique within the batch")
        seen.add(custom_id)
    return requests


def _batch(state: BatchState, batch_id: str) -> Batch:
    batch = state.store.batches.get(batch_id)
    if batch is None or batch.api != "anthropic":
        raise ApiError(404, f"message batch {batch_id} not found")
    return batch


async def _get(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    return json_response(describe(state, _batch(state, request.match_info["batch_id"]), request))


async def _list(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    limit = page_limit(request, 20, 1000)
    items = [describe(state, batch, request) for batch in state.store.batches_of("anthropic")]
    ids = [item["id"] for item in items]
    after, before = request.query.get("after_id"), request.query.get("before_id")
    if before is not None:
        preceding = items[: ids.index(before)] if before in ids else []
        page, more = preceding[-limit:], len(preceding) > limit
    else:
        following = items[ids.index(after) + 1 :] if after in ids else ([] if after else items)
        page, more = following[:limit], len(following) > limit
    return json_response(
        {
            "data": page,
            "has_more": more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    )


async def _results(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    batch = _batch(state, request.match_info["batch_id"])
    state.store.settle(batch, state.clock())
    if batch.results is None:
        raise ApiError(
            400, f"Message Batch {batch.id} has not yet finished processing; its results are not ready"
        )
    return web.Response(body=batch.results, content_type="application/x-jsonl")


async def _cancel(request: web.Request) -> web.Response:
    state = request.app[BATCHES]
    batch = _batch(state, request.match_info["batch_id"])
    now = state.clock()
    if batch.phase(now).ended:
        raise ApiError(409, f"Message Batch {batch.id} has already ended and cannot be canceled")
    if batch.cancel_at is None:
        batch.cancel_at = now
    return json_response(describe(state, batch, request))


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def describe(state: BatchState, batch: Batch, request: web.Request) -> dict[str, Any]:
    """The ``MessageBatch`` as the real API reports it at this moment."""
    now = state.clock()
    state.store.settle(batch, now)
    phase = batch.phase(now)
    size = batch.timeline.size
    counts = {"processing": size, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if phase.ended:
        succeeded, errored = batch.counts(now)
        rest = size - succeeded - errored
        counts = {"processing": 0, "succeeded": succeeded, "errored": errored, "canceled": 0, "expired": 0}
        counts[batch.unfinished_kind(now)] = rest
    status = "ended" if phase.ended else "canceling" if phase is Phase.CANCELLING else "in_progress"
    base = f"{request.scheme}://{request.host}"
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "created_at": _rfc3339(batch.timeline.created),
        "expires_at": _rfc3339(batch.timeline.created + _DAY),
        "ended_at": _rfc3339(batch.ended_at()) if phase.ended else None,
        "cancel_initiated_at": _rfc3339(batch.cancel_at) if batch.cancel_at is not None else None,
        "archived_at": None,
        "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if phase.ended else None,
    }
