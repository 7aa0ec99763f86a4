"""One attempt at one job: limits -> provider call -> classify -> an Outcome for the checkpointer.

Nothing here touches the database: the attempt ends in an :class:`Outcome` (succeeded, retry later,
failed) that the checkpointer writes back under the job's lease, or in a :class:`Stop` when every job
would fail alike (auth, quota, budget) and the run must stop with the job left pending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from batchrunner.engine.options import OUTER_DEADLINE_MARGIN_S, EngineOptions, Wiring
from batchrunner.engine.systematic import failure_class
from batchrunner.errors import (
    PermanentError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RunStoppingError,
)
from batchrunner.models import AttemptRecord, ClaimedJob, JobState, Lease, Outcome, ResultRecord
from batchrunner.policy.budget import Budget
from batchrunner.policy.ratelimit import ProviderLimiter, Reservation
from batchrunner.policy.retry import RetryAction, decide
from batchrunner.policy.tokens import estimate_tokens
from batchrunner.providers.base import Provider, ProviderRequest, ProviderResponse

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, kw_only=True, slots=True)
class Stop:
    """The run must stop: ``reason`` for the user; the job goes back to pending (attempt not counted)."""

    reason: str
    outcome: Outcome | None
    """The attempt to record (a call was made), or None when nothing was sent (budget)."""


@dataclass(kw_only=True, slots=True)
class AttemptContext:
    """What every attempt of one runner shares."""

    runner_id: str
    options: EngineOptions
    """The runner's options (the timeout, the retry policy)."""
    wiring: Wiring
    """The runner's parts (prices, the crash point)."""
    providers: Callable[[str], Provider]
    """The provider of a name, built once per runner (so are the limiters)."""
    limiters: Callable[[str], ProviderLimiter]
    budget: Budget
    rng: random.Random
    unknown_price_models: set[str]
    on_pause: Callable[[str, float], None] = lambda _provider, _seconds: None
    """Told of every 429/529 pause (provider, seconds), so the other runners of the run pause too."""
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the run stops: a job still waiting for its limits is then not sent."""
    budget_settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever a call settles its budget reservation (a call waiting for room re-checks)."""
    lease_check: Callable[[Lease, asyncio.Event], Awaitable[bool | None]]
    """Asked just before a call is sent: is the lease still ours (None: a stop came first)? See
    :mod:`batchrunner.engine.leases`."""
    in_flight: int = 0
    """Requests sent and not answered yet (for progress)."""
    mark_sent: Callable[[Lease], None]
    """Told as each call goes out (the adapter's ``ProviderRequest.on_sent``), to journal it and record it
    in the store (see :mod:`batchrunner.engine.sendmarks`)."""


class NotSent:
    """A stop was requested while the job waited for its limits: nothing was sent; give the job back."""

    def __repr__(self) -> str:
        return "NOT_SENT"


NOT_SENT = NotSent()


class LeaseLost:
    """The job's lease was lost before it was sent (taken over by another runner, or cancelled)."""

    def __repr__(self) -> str:
        return "LEASE_LOST"


LEASE_LOST = LeaseLost()


async def perform(job: ClaimedJob, ctx: AttemptContext) -> Outcome | Stop | NotSent | LeaseLost:
    """Send ``job`` once, within its provider's limits, and say what becomes of it."""
    body = json.loads(job.request_json)
    estimate = estimate_tokens(job.endpoint, body)
    worst_case = ctx.wiring.prices.worst_case_cost(job.model, estimate.prompt_tokens, estimate.output_tokens)
    if not await _reserve(ctx, worst_case):
        return Stop(reason=_budget_reason(ctx.budget, job.model, worst_case), outcome=None)
    limiter = ctx.limiters(job.provider)
    request = ProviderRequest(
        endpoint=job.endpoint,
        body=body,
        timeout_s=ctx.options.timeout_s,
        on_sent=lambda: ctx.mark_sent(job.lease),  # as the request goes out (ProviderRequest.on_sent)
    )
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    cost: Decimal | None = None
    sent = False
    try:
        async with limiter.slot() as slot:
            reservation = await _admit(limiter, estimate.total, ctx.stop_requested)
            if reservation is None:
                return NOT_SENT
            ours = await ctx.lease_check(job.lease, ctx.stop_requested)
            if not ours or ctx.stop_requested.is_set():  # the check may have waited for the database
                limiter.settle(reservation, 0)
                return LEASE_LOST if ours is False else NOT_SENT
            started_at, started = datetime.now(UTC), time.perf_counter()
            sent = True
            ctx.in_flight += 1
            try:
                response = await _call(ctx.providers(job.provider), request, ctx.options.timeout_s)
            except RateLimited as exc:
                limiter.settle(reservation, 0)
                deadline = limiter.on_rate_limited(slot, retry_after=exc.retry_after)
                if deadline is not None:
                    ctx.on_pause(job.provider, deadline - time.monotonic())
                limiter.observe_headers(exc.rate_limits)
                raise
            except ProviderError as exc:
                limiter.settle(reservation, None)
                limiter.observe_headers(exc.rate_limits)
                raise
            usage = response.usage
            limiter.settle(reservation, usage.input_tokens + usage.output_tokens)
            limiter.on_success(slot)
            limiter.observe_headers(response.rate_limits)
        ctx.wiring.crash_point("after-response")
        cost = _cost(ctx, job.model or response.model, response)
        return _success(job, ctx, response, cost, started_at, started)
    except ProviderError as exc:
        return _failure(job, ctx, exc, started_at, started)
    finally:  # a call not sent cost nothing; one sent without a known cost counts its worst case
        if sent:
            ctx.in_flight -= 1
        ctx.budget.settle(worst_case, cost if sent else Decimal(0))
        ctx.budget_settled.set()


async def _admit(limiter: ProviderLimiter, tokens: int, stop: asyncio.Event) -> Reservation | None:
    """The limiter's permission to send, or None when a stop is requested first.

    A worker may wait here for seconds (a 429 pause, a tight RPM); after Ctrl-C it must not send when
    the wait ends (docs/reliability.md rule 9: stop claiming, finish only what is in flight).
    """
    if stop.is_set():
        return None
    reservation = limiter.try_acquire(tokens)
    if reservation is None:  # it has to wait: race the wait against a stop
        acquiring = asyncio.ensure_future(limiter.acquire(tokens))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((acquiring, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not acquiring.done():
                acquiring.cancel()
                await asyncio.gather(acquiring, return_exceptions=True)
        if acquiring.cancelled():
            return None
        reservation = acquiring.result()
    if stop.is_set():
        limiter.settle(reservation, None)
        return None
    return reservation


async def _reserve(ctx: AttemptContext, worst_case: Decimal | None) -> bool:
    """Reserve the call's worst case; while it does not fit only because of calls in flight, wait for
    them to settle (their real cost is usually far below their worst case). False: the cap is reached."""
    while not ctx.budget.try_reserve(worst_case):
        if worst_case is None or ctx.budget.reserved <= 0:
            return False
        ctx.budget_settled.clear()
        await ctx.budget_settled.wait()
    return True


async def _call(provider: Provider, request: ProviderRequest, timeout_s: float) -> ProviderResponse:
    try:
        async with asyncio.timeout(timeout_s + OUTER_DEADLINE_MARGIN_S):
            return await provider.call(request)
    except TimeoutError as exc:
        log.warning("provider %s did not return within its own timeout; cut off", provider.name)
        raise ProviderTimeout(
            f"no answer within {timeout_s + OUTER_DEADLINE_MARGIN_S:g} s (outer deadline)",
            possibly_billed=True,
        ) from exc


def _cost(ctx: AttemptContext, model: str | None, response: ProviderResponse) -> Decimal | None:
    cost = ctx.wiring.prices.cost(model, response.usage)
    if cost is None and model not in ctx.unknown_price_models:
        ctx.unknown_price_models.add(model or "")
        log.warning("no price for model %r: its cost is unknown (add it under [prices] in the config)", model)
    return cost


def _success(
    job: ClaimedJob,
    ctx: AttemptContext,
    response: ProviderResponse,
    cost: Decimal | None,
    started_at: datetime,
    started: float,
) -> Outcome:
    latency_ms = (time.perf_counter() - started) * 1000
    attempt, result = answered_records(
        number=job.attempt,
        runner_id=ctx.runner_id,
        started_at=started_at,
        response=response,
        cost=cost,
        latency_ms=latency_ms,
    )
    return Outcome(lease=job.lease, attempt=attempt, state=JobState.SUCCEEDED, result=result)


def answered_records(
    *,
    number: int,
    runner_id: str | None,
    started_at: datetime,
    response: ProviderResponse,
    cost: Decimal | None,
    latency_ms: float | None,
    batch_line: str | None = None,
) -> tuple[AttemptRecord, ResultRecord]:
    """The attempt row and the result of an answer, in real time or from a provider batch's line."""
    usage = response.usage
    attempt = AttemptRecord(
        number=number,
        runner_id=runner_id,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        status_code=response.status_code,
        latency_ms=latency_ms,
        ttft_ms=response.ttft_ms,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        request_id=response.request_id,
    )
    result = ResultRecord(
        output_text=response.output_text,
        response_json=response.response_json,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        cost_usd=None if cost is None else float(cost),
        latency_ms=latency_ms,
        ttft_ms=response.ttft_ms,
        stream_events=response.stream_events,
        batch_line=batch_line,
    )
    return attempt, result


def _failure(
    job: ClaimedJob, ctx: AttemptContext, error: ProviderError, started_at: datetime, started: float
) -> Outcome | Stop:
    message = str(error)[:MAX_ERROR_CHARS]
    attempt = AttemptRecord(
        number=job.attempt,
        runner_id=ctx.runner_id,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        status_code=error.status_code,
        error_class=error.error_class,
        error_message=message,
        latency_ms=(time.perf_counter() - started) * 1000,
        possibly_billed=error.possibly_billed,
        request_id=error.request_id,
        error_body=error.error_body,
    )
    decision = decide(error, job.attempt, ctx.rng, ctx.options.retry)
    common = {"lease": job.lease, "attempt": attempt, "error_class": error.error_class, "error": message}
    if decision.action is RetryAction.STOP or isinstance(error, RunStoppingError):
        outcome = Outcome(state=JobState.PENDING, refund_attempt=True, **common)  # type: ignore[arg-type]
        named = message.startswith(f"{job.provider}: ")  # the adapters' messages name their provider
        return Stop(reason=message if named else f"{job.provider}: {message}", outcome=outcome)
    if decision.action is RetryAction.RETRY:
        not_before = datetime.now(UTC) + timedelta(seconds=decision.delay)
        return Outcome(state=JobState.PENDING, not_before=not_before, **common)  # type: ignore[arg-type]
    kind = failure_class(error.status_code, error.error_type) if isinstance(error, PermanentError) else None
    return Outcome(state=JobState.FAILED, failure_class=kind, **common)  # type: ignore[arg-type]


def _budget_reason(budget: Budget, model: str | None, worst_case: Decimal | None) -> str:
    if worst_case is None:
        return f"--max-cost cannot be enforced: no price for model {model!r} (add it under [prices])"
    return (
        f"budget reached: ${budget.spent:.4f} spent, ${budget.reserved:.4f} in flight, "
        f"next call up to ${worst_case:.4f}, cap ${budget.cap}"
    )
