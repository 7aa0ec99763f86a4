"""What every batch route shares: the server's batch state, the key check, the batch API's own faults, the
books of its requests, and errors in each provider's shape.

A batch route's request goes: count it (``batch_requests``) -> API key (401) -> the ``batch_api_faults``
plan for its number (an HTTP-error fault answers with that error, ``Retry-After`` included; ``reset``
drops the connection) -> the handler. None of it touches the realtime books or the limiter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from batchrunner.fakeserver import error_bodies, transport
from batchrunner.fakeserver.auth import key_problem
from batchrunner.fakeserver.batchstore import BatchStore
from batchrunner.fakeserver.books import BatchBooks
from batchrunner.fakeserver.config import FakeServerConfig
from batchrunner.fakeserver.faults import FaultKind, FaultPlan

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BatchState:
    """The batch APIs of one server: settings, books, files and batches, ids, fault plans, the clock."""

    __slots__ = ("books", "clock", "config", "next_id", "plan_for", "store")

    def __init__(
        self,
        config: FakeServerConfig,
        books: BatchBooks,
        next_id: Callable[[], str],
        plan_for: Callable[[str], FaultPlan | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.books = books
        self.next_id = next_id
        self.plan_for = plan_for
        self.clock = clock
        self.store = BatchStore(books, next_id)


BATCHES = web.AppKey("batchrunner_fakeserver_batches", BatchState)


class ApiError(Exception):
    """An error answer from a batch handler: ``raise ApiError(404, "No such batch")``."""

    def __init__(
        self, status: int, message: str, *, kind: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind or _KINDS.get(status, "invalid_request_error")
        self.param = param


_KINDS = {404: "not_found_error", 409: "invalid_request_error", 413: "request_too_large"}


def guarded(handler: Handler, *, anthropic: bool) -> Handler:
    """``handler`` behind the key check and the batch API's fault plan, its status in the books."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[BATCHES]
        books = state.books
        number = books.request()
        request_id = f"req_{state.next_id()}"
        missing = key_problem(request, anthropic, state.config.api_key)
        if missing is not None:
            return _send(
                books, error_bodies.unauthorized(anthropic=anthropic, missing=missing, request_id=request_id)
            )
        plan = state.config.batch_api_faults
        fault = plan.fault_for(number) if plan is not None else None
        if fault is FaultKind.RESET:
            return transport.reset(request)
        if fault is not None and fault in error_bodies.ERROR_FAULTS:
            error = error_bodies.fault_error(
                fault,
                anthropic=anthropic,
                model="batch",
                request_id=request_id,
                retry_after_s=state.config.retry_after_s,
            )
            return _send(books, error)
        try:
            response = await handler(request)
        except ApiError as exc:
            return _send(books, wire_error(exc, anthropic=anthropic, request_id=request_id))
        books.status(response.status)
        response.headers["request-id" if anthropic else "x-request-id"] = request_id
        return response

    return handle


def wire_error(exc: ApiError, *, anthropic: bool, request_id: str) -> error_bodies.WireError:
    if anthropic:
        body = error_bodies.anthropic_body(exc.kind, exc.message, request_id)
    else:
        kind = "invalid_request_error" if exc.kind in ("not_found_error", "request_too_large") else exc.kind
        body = error_bodies.openai_body(exc.message, kind, None, exc.param)
    return error_bodies.WireError(status=exc.status, body=body, headers={})


def _send(books: BatchBooks, error: error_bodies.WireError) -> web.Response:
    books.status(error.status)
    return web.Response(
        status=error.status, body=error.body, headers=error.headers, content_type="application/json"
    )


def json_response(value: Any) -> web.Response:
    return web.Response(body=json.dumps(value, separators=(",", ":")), content_type="application/json")


def jsonl_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="application/binary")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, streamed in (chunked or not); 413 beyond ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request exceeds the maximum size of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None


def page_limit(request: web.Request, default: int, maximum: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"limit: must be an integer, not {raw!r}", param="limit") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"limit: must be between 1 and {maximum}", param="limit")
    return value
