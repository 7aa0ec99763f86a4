"""The aiohttp application: routes, and the path every API request takes.

A request goes: parse (400 if the body is unusable) -> count the attempt of its prompt key -> API key (401) ->
scheduled fault for this attempt? -> otherwise the RPM/TPM limiter (429, counted as a limit violation) and a
random fault draw -> latency + jitter -> the fault, or the answer. Auth failures and limiter refusals are
answered at once; everything else waits the configured latency first.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from batchrunner.fakeserver import (
    anthropic_batches,
    anthropic_wire,
    error_bodies,
    openai_batches,
    openai_wire,
    render,
    transport,
)
from batchrunner.fakeserver.auth import key_problem
from batchrunner.fakeserver.batchhttp import BATCHES, BatchState
from batchrunner.fakeserver.books import Books
from batchrunner.fakeserver.config import FakeServerConfig
from batchrunner.fakeserver.error_bodies import WireError
from batchrunner.fakeserver.faults import Dice, FaultKind, FaultPlan, directive_plan
from batchrunner.fakeserver.limits import SlidingWindowLimiter, Verdict
from batchrunner.fakeserver.prompts import Api, BadRequest, Call, parse_call

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ServerState:
    """Everything one server instance keeps between requests."""

    __slots__ = ("_counter", "_prefix", "books", "config", "dice", "limiter", "released", "rolls")

    def __init__(self, config: FakeServerConfig) -> None:
        self.config = config
        self.books = Books()
        self.limiter = (
            SlidingWindowLimiter(rpm=config.rpm, tpm=config.tpm, window_s=config.window_s)
            if config.has_limits
            else None
        )
        self.dice = Dice(config.fault_rates, config.seed)
        self.rolls = config.jitter_ms > 0 or any(rate > 0 for rate in config.fault_rates.values())
        self.released = asyncio.Event()
        """Set at shutdown: hanging requests give up."""
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def next_id(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"

    def plan_for(self, key: str) -> FaultPlan | None:
        """The schedule file's plan for ``key``, else the directive in it (``ValueError`` if malformed)."""
        plan = self.config.schedule.get(key)
        return plan if plan is not None else directive_plan(key)

    def reset(self) -> None:
        self.books.clear()
        if self.limiter is not None:
            self.limiter.clear()


STATE = web.AppKey("batchrunner_fakeserver_state", ServerState)


def create_app(config: FakeServerConfig) -> web.Application:
    """The fake provider server as an aiohttp application (run it with :func:`~.server.start_server`)."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    state = ServerState(config)
    app[STATE] = state
    app[BATCHES] = BatchState(config, state.books.batch, state.next_id, state.plan_for)
    for api in Api:
        app.router.add_post(api.value, _api_handler(api))
    openai_batches.add_routes(app.router)
    anthropic_batches.add_routes(app.router)
    app.router.add_get("/stats", _stats)
    app.router.add_post("/reset", _reset)
    app.router.add_route("*", "/v1/{tail:.*}", _unknown)

    async def release_hangs(_: web.Application) -> None:
        state.released.set()

    app.on_shutdown.append(release_hangs)
    return app


async def _stats(request: web.Request) -> web.Response:
    prompts = request.query.get("prompts", "1") not in ("0", "false", "no")
    batches = request.app[BATCHES]
    batches.store.settle_all(batches.clock())
    return web.json_response(request.app[STATE].books.snapshot(prompts=prompts))


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def _unknown(request: web.Request) -> web.Response:
    message = f"Invalid URL ({request.method} {request.path})"
    return web.Response(
        status=404,
        body=error_bodies.openai_body(message, "invalid_request_error"),
        content_type="application/json",
    )


def _api_handler(api: Api) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        books = state.books
        books.begin(api.value)
        try:
            return await _serve(request, state, api)
        except asyncio.CancelledError:
            books.disconnect()
            raise
        finally:
            books.end()

    return handle


async def _serve(request: web.Request, state: ServerState, api: Api) -> web.StreamResponse:
    ident = state.next_id()
    anthropic = api.is_anthropic
    headers = {"request-id" if anthropic else "x-request-id": f"req_{ident}"}
    try:
        call = parse_call(
            api, _loads(await request.read()), default_max_tokens=state.config.default_max_tokens
        )
        plan = _plan(state, call.key)
    except BadRequest as exc:
        error = error_bodies.bad_request(
            exc.message, exc.param, anthropic=anthropic, request_id=f"req_{ident}"
        )
        return _error(state, error, headers)
    attempt = state.books.attempt(call.key)
    missing = key_problem(request, anthropic, state.config.api_key)
    if missing is not None:
        return _error(
            state,
            error_bodies.unauthorized(anthropic=anthropic, missing=missing, request_id=f"req_{ident}"),
            headers,
        )
    fault = plan.fault_for(attempt) if plan is not None else None
    if fault is None and state.limiter is not None:
        refusal = _limit(state, state.limiter, call, headers, ident)
        if refusal is not None:
            return refusal
    fault_draw, jitter_draw = state.dice.roll(call.key, attempt) if state.rolls else (1.0, 0.0)
    if fault is None:
        fault = state.dice.pick(fault_draw)
    delay_ms = state.config.latency_ms + state.config.jitter_ms * jitter_draw
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000)
    if fault is not None:
        state.books.fault(fault.value)
    return await _respond(request, state, call, fault, ident, headers)


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly.)"
        ) from None


def _plan(state: ServerState, key: str) -> FaultPlan | None:
    try:
        return state.plan_for(key)
    except ValueError as exc:
        raise BadRequest(f"bad fault directive in the prompt: {exc}") from None


def _limit(
    state: ServerState, limiter: SlidingWindowLimiter, call: Call, headers: dict[str, str], ident: str
) -> web.Response | None:
    """Charge the limiter; add its headers to ``headers``; a 429 response if it refuses."""
    tokens = call.input_tokens + call.max_tokens
    verdict = limiter.acquire(asyncio.get_running_loop().time(), tokens)
    headers.update(_ratelimit_headers(verdict, anthropic=call.api.is_anthropic))
    if verdict.admitted:
        return None
    state.books.violation()
    error = error_bodies.limited(
        verdict, anthropic=call.api.is_anthropic, model=call.model, tokens=tokens, request_id=f"req_{ident}"
    )
    return _error(state, error, headers)


def _ratelimit_headers(verdict: Verdict, *, anthropic: bool) -> dict[str, str]:
    if anthropic:
        return anthropic_wire.ratelimit_headers(verdict.requests, verdict.tokens)
    return openai_wire.ratelimit_headers(verdict.requests, verdict.tokens)


def _error(state: ServerState, error: WireError, headers: dict[str, str]) -> web.Response:
    state.books.status(error.status)
    return web.Response(
        status=error.status, body=error.body, headers=headers | error.headers, content_type="application/json"
    )


async def _respond(
    request: web.Request,
    state: ServerState,
    call: Call,
    fault: FaultKind | None,
    ident: str,
    headers: dict[str, str],
) -> web.StreamResponse:
    """Send the answer, or inflict ``fault`` on the request."""
    config = state.config
    if fault is FaultKind.RESET:
        return transport.reset(request)
    if fault is FaultKind.HANG:
        return await transport.hang(request, state.released, config.max_hang_s)
    if fault in error_bodies.ERROR_FAULTS:
        assert fault is not None
        error = error_bodies.fault_error(
            fault,
            anthropic=call.api.is_anthropic,
            model=call.model,
            request_id=f"req_{ident}",
            retry_after_s=config.retry_after_s,
        )
        return _error(state, error, headers)
    rendered = render.render(
        call, ident=ident, with_usage=fault is not FaultKind.NO_USAGE, embedding_dim=config.embedding_dim
    )
    if fault is FaultKind.HTML:
        state.books.status(200)
        return web.Response(status=200, body=render.HTML_PAGE, headers=headers, content_type="text/html")
    if rendered.events is not None:
        return await _send_events(request, state, call, rendered, fault, headers)
    assert rendered.body is not None
    if fault is FaultKind.TRUNCATE:
        return await transport.send_truncated(request, rendered.body, headers, "application/json")
    state.books.status(200)
    if fault is FaultKind.BAD_JSON:
        return web.Response(
            body=render.corrupt_body(rendered.body), headers=headers, content_type="application/json"
        )
    _book_answer(state, call, rendered)
    return web.Response(body=rendered.body, headers=headers, content_type="application/json")


async def _send_events(
    request: web.Request,
    state: ServerState,
    call: Call,
    rendered: render.Rendered,
    fault: FaultKind | None,
    headers: dict[str, str],
) -> web.StreamResponse:
    assert rendered.events is not None
    state.books.streams += 1
    gap_s = state.config.event_gap_ms / 1000
    if fault is FaultKind.TRUNCATE:
        cut = state.config.cut_after_events
        cut_after = max(1, len(rendered.events) // 2) if cut is None else min(cut, len(rendered.events) - 1)
        return await transport.send_stream(
            request, rendered.events, headers, cut_after=cut_after, gap_s=gap_s
        )
    state.books.status(200)
    if fault is FaultKind.BAD_JSON:
        events = render.corrupt_events(call, rendered.events)
        return await transport.send_stream(request, events, headers, gap_s=gap_s)
    _book_answer(state, call, rendered)
    return await transport.send_stream(request, rendered.events, headers, gap_s=gap_s)


def _book_answer(state: ServerState, call: Call, rendered: render.Rendered) -> None:
    state.books.answer(
        call.key,
        input_tokens=rendered.input_tokens,
        output_tokens=rendered.output_tokens,
        cached_tokens=rendered.cached_tokens,
    )
