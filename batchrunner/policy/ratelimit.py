"""RPM + TPM limits and adaptive concurrency for one provider, so the provider rarely has to say 429.

Providers quantise per-minute limits into short windows, charging a request's prompt estimate plus
``max_tokens`` up front. The limiter keeps a **sliding window** per dimension (requests, tokens) that
admits a request only if it fits, with the units admitted in the last ``window_s + guard_s`` seconds, in
one 1-second quantum (:mod:`batchrunner.policy.window`, which also says why not aiolimiter). Quanta
that are not whole requests round down (``rpm=90`` admits one request per window) as providers
quantise; below 60 RPM a request holds the window for ``60/rpm`` seconds, so the per-minute rate stays
exact. Concurrency is adaptive (AIMD, :mod:`batchrunner.policy.concurrency`).

The rules, in one place:

- **Oversized requests** (more than a quantum, e.g. a 5,000-token request at ``tpm=60_000``) go
  alone, holding the window for ``amount / quantum`` windows (:mod:`batchrunner.policy.window`).
- **Settling** (``settle``): usage above the reservation is charged when the call ends. Unused tokens
  are *not* given back unless ``refund_unused`` is set: OpenAI (and the fake server) charge prompt +
  ``max_tokens`` up front and keep counting them for the window, so giving them back would let us
  send tokens the provider still counts; after one window a reservation has aged out anyway.
  Anthropic adjusts its output-token count at the end of a call; ``refund_unused=True`` mirrors that.
- **429/529** (``on_rate_limited``): a 429 that is part of a *storm* -- at least ``storm_count`` of
  the last ``storm_window`` answers (successes and 429s) were 429s -- pauses the whole provider until
  ``Retry-After`` (default 1 s, capped at 300 s) plus jitter (``uniform(0, min(pause_jitter_s,
  delay))``), and halves the concurrency limit, once per burst (AIMD,
  :mod:`batchrunner.policy.concurrency`). An *isolated*
  429 delays only its own job: the retry policy waits at least its ``Retry-After`` (docs/reliability.md
  rule 6). Why: real providers answer a few 429s from an overloaded shared backend far from our own
  limit; pausing everything for each of them made a run with 5% random 429s 41x slower than a clean
  one (BENCHMARKS.md). When we are at a real limit, the 429s come in a storm (and the provider's
  remaining-requests headers, below, brake first), and then the whole provider pauses.
- **Rate-limit headers** (``observe_headers``): when the provider reports fewer requests or tokens
  remaining than the current window still allows, the window is filled up to the provider's figure
  until its reset (at most one window), which slows dispatch before a 429 happens.
- **Learned limits** (``RateLimits.learn_from_headers``, on for runs): the per-minute limits the
  provider advertises stand in for a limit not configured and lower a configured one, never raise it;
  until the first answer, a limit still to be learned is probed with at most 4 requests a window
  (:mod:`batchrunner.policy.learnedlimits`). A learned limit is split among runners like a configured one.

Waiting is computed, never polled: a waiter sleeps exactly until the entries it needs leave the
window (or the pause ends) and then re-checks. The clock and the sleep are injected so tests control
time instead of sleeping (STYLE: the aiolimiter anchor).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from batchrunner.models import RateLimitInfo
from batchrunner.policy.concurrency import AdaptiveConcurrency, Slot
from batchrunner.policy.learnedlimits import LearnedLimits
from batchrunner.policy.limits import RateLimits
from batchrunner.policy.window import EPSILON, Entry, Window

__all__ = ["ProviderLimiter", "RateLimits", "Reservation"]

log = logging.getLogger(__name__)


class Reservation:
    """The tokens one request reserved; hand it to :meth:`ProviderLimiter.settle` once, after the call."""

    __slots__ = ("_entry", "_settled", "tokens")

    def __init__(self, tokens: int, entry: Entry | None) -> None:
        self.tokens = tokens
        self._entry = entry
        self._settled = False

    def __repr__(self) -> str:
        return f"Reservation(tokens={self.tokens}, settled={self._settled})"


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class ProviderLimiter:
    """RPM, TPM and adaptive concurrency for one provider, shared by all of its workers.

    One request goes through it like this::

        async with limiter.slot() as slot:              # a concurrency slot (AIMD-limited)
            reservation = await limiter.acquire(tokens)  # RPM + TPM, waits in FIFO order
            try:
                response = await provider.call(request)
            except RateLimited as exc:
                limiter.settle(reservation, 0)
                limiter.on_rate_limited(slot, retry_after=exc.retry_after)
                raise
            limiter.settle(reservation, usage.input_tokens + usage.output_tokens)
            limiter.on_success(slot)
            limiter.observe_headers(response.rate_limits)

    The slot comes first, so that rate capacity is taken only by a request that is about to be sent.
    """

    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        name: str = "provider",
    ) -> None:
        self.limits = limits
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._learned = LearnedLimits(
            rpm=limits.rpm,
            tpm=limits.tpm,
            learn=limits.learn_from_headers,
            span=limits.window_s + limits.guard_s,
        )
        self._heard = asyncio.Event()  # the first answer: a probing waiter re-checks at once
        self._requests = self._window(limits.rpm)
        self._tokens = self._window(limits.tpm)
        self._queue = asyncio.Lock()  # FIFO: waiters are admitted in arrival order
        self._paused_until = -math.inf
        self._concurrency = AdaptiveConcurrency(
            max_concurrency=limits.max_concurrency,
            min_concurrency=limits.min_concurrency,
            successes_per_increase=limits.successes_per_increase,
        )
        self._recent_429s: deque[bool] = deque(maxlen=limits.storm_window)
        self._part = (0, 1)
        self._next_request_at = -math.inf

    @property
    def part(self) -> tuple[int, int]:
        """``(index, parts)``: this limiter enforces part ``index`` of ``parts`` of the limits."""
        return self._part

    def set_part(self, index: int, parts: int) -> None:
        """Enforce part ``index`` (0-based) of ``parts`` equal parts of the configured RPM and TPM.

        Several runners of one run split the provider's limits among themselves, each taking one part,
        so that together they stay under the limit the provider enforces. The request quantum is dealt
        out in whole requests (50 a window among three runners: 17, 17 and 16), so the parts add up to
        the quantum exactly: a third of 50 would round down to 16 each and waste 4% of the limit
        (measured, BENCHMARKS.md "Several runners"). With fewer whole requests than parts, each part is
        a fraction of a request (a request then holds the window for longer). Tokens split evenly.
        """
        if not 0 <= index < parts:
            raise ValueError(f"part {index!r} of {parts!r}: need 0 <= index < parts")
        self._part = (index, parts)
        self._apply_part()

    def _apply_part(self) -> None:
        index, parts = self._part
        if self._requests is not None:
            self._requests.cap = _whole_part(self._requests.full_cap, index, parts)
        if self._tokens is not None:
            self._tokens.cap = self._tokens.full_cap / parts

    @property
    def limits_in_force(self) -> tuple[float | None, float | None]:
        """``(rpm, tpm)`` enforced (of the whole key, before the runners' split): configured or learned."""
        return self._learned.in_force()

    @property
    def rate_limited(self) -> bool:
        """True when an RPM or TPM limit is in force, or may be learned from the first answer."""
        return self._requests is not None or self._tokens is not None or self._learned.probing

    @property
    def concurrency_limit(self) -> int:
        """The current (adaptive) number of requests allowed in flight."""
        return self._concurrency.limit

    @property
    def in_flight(self) -> int:
        return self._concurrency.in_flight

    @property
    def paused_until(self) -> float:
        """The clock time before which nothing is dispatched (``-inf``: not paused)."""
        return self._paused_until

    async def acquire(self, tokens: int) -> Reservation:
        """Wait until one request of ``tokens`` (prompt estimate + output reservation) may be sent."""
        tokens = max(0, int(tokens))
        async with self._queue:
            while (delay := self._delay(tokens)) > EPSILON:
                if self._learned.probing:
                    await self._sleep_or_hear(delay)
                else:
                    await self._sleep(delay)
            return self._admit(tokens)

    async def _sleep_or_hear(self, delay: float) -> None:
        """Sleep, but wake as soon as the first answer ends the probe (its limits decide the wait)."""
        sleeping = asyncio.ensure_future(self._sleep(delay))
        hearing = asyncio.ensure_future(self._heard.wait())
        try:
            await asyncio.wait((sleeping, hearing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            hearing.cancel()
            await asyncio.gather(sleeping, hearing, return_exceptions=True)

    def try_acquire(self, tokens: int) -> Reservation | None:
        """:meth:`acquire` without waiting: None when the request would have to wait (or others wait)."""
        tokens = max(0, int(tokens))
        if self._queue.locked() or self._delay(tokens) > EPSILON:
            return None
        return self._admit(tokens)

    def _admit(self, tokens: int) -> Reservation:
        now = self._clock()
        if self._requests is not None:
            self._requests.add(1, now)
            if self.limits.pace:
                # From this request's target time, not its wake-up time: a waiter woken late (a busy
                # event loop) must not push every later request back. Lateness below one interval is
                # absorbed; after an idle spell the spacing starts afresh from now (no burst of two).
                interval = self._requests.span / max(self._requests.cap, EPSILON)
                target = self._next_request_at
                self._next_request_at = (target if target > now - interval else now) + interval
        entry = None if self._tokens is None else self._tokens.add(tokens, now)
        self._learned.admitted(now, tokens)
        return Reservation(tokens, entry)

    def _delay(self, tokens: int) -> float:
        now = self._clock()
        delay = max(self._paused_until, self._next_request_at) - now
        delay = max(delay, self._learned.probe_delay(now, self._part[1]))
        if self._requests is not None:
            delay = max(delay, self._requests.wait(1, now))
        if self._tokens is not None:
            delay = max(delay, self._tokens.wait(tokens, now))
        return delay

    def settle(self, reservation: Reservation, actual_tokens: int | None) -> None:
        """Correct a reservation to the tokens the call really used (``None``: unknown, keep it)."""
        if reservation._settled:
            raise ValueError("this reservation was already settled")
        reservation._settled = True
        if actual_tokens is None or self._tokens is None:
            return
        extra = actual_tokens - reservation.tokens
        entry = reservation._entry
        if extra > 0:
            self._tokens.add(extra, self._clock())
        elif extra < 0 and self.limits.refund_unused and entry is not None:
            self._tokens.resize(entry, max(0, actual_tokens))

    def pause_until(self, deadline: float) -> None:
        """Dispatch nothing before ``deadline`` (clock time); a later pause wins over an earlier one."""
        self._paused_until = max(self._paused_until, deadline)

    def on_rate_limited(self, slot: Slot | None, *, retry_after: float | None = None) -> float | None:
        """A 429/529. In a storm (see the module docstring), pause the whole provider and cut concurrency,
        returning the pause deadline; an isolated one returns None (only its job waits, in the retry)."""
        self._recent_429s.append(True)
        if sum(self._recent_429s) < self.limits.storm_count:
            return None
        limits = self.limits
        delay = limits.default_pause_s
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            delay = retry_after
        delay = min(delay, limits.max_pause_s)
        delay += self._rng.uniform(0.0, min(limits.pause_jitter_s, delay))
        deadline = self._clock() + delay
        self.pause_until(deadline)
        self._concurrency.cut(slot)
        return deadline

    def on_success(self, slot: Slot | None = None) -> None:
        """A successful call: every ``successes_per_increase`` of them add a slot back."""
        self._recent_429s.append(False)
        self._concurrency.success()

    def observe_headers(self, info: RateLimitInfo | None) -> None:
        """After every answer (``None``: it had no rate-limit headers): learn the limits it advertises,
        then slow down when the remaining requests/tokens are below what our window allows."""
        if self._learned.observe(info):
            self._follow_learned()
        if not self._learned.probing:
            self._heard.set()
        if info is None:
            return
        now = self._clock()
        for window, remaining, reset in (
            (self._requests, info.remaining_requests, info.reset_requests_s),
            (self._tokens, info.remaining_tokens, info.reset_tokens_s),
        ):
            if window is None or remaining is None:
                continue
            hold = window.span
            if reset is not None and math.isfinite(reset) and reset >= 0:
                hold = min(hold, reset)
            window.cap_remaining(remaining, now, hold)

    def _window(self, per_minute: float | None) -> Window | None:
        if per_minute is None:
            return None
        return Window(per_minute=per_minute, window_s=self.limits.window_s, guard_s=self.limits.guard_s)

    def _follow_learned(self) -> None:
        """Enforce the limits in force now: a window for a limit just learned (counting what was admitted
        in the last window), a new size for one that changed; the pacing keeps its last target."""
        now = self._clock()
        before = self._interval()
        rpm, tpm = self._learned.in_force()
        old_requests, old_tokens = self._requests, self._tokens
        self._requests, self._tokens = self._resized(old_requests, rpm), self._resized(old_tokens, tpm)
        self._apply_part()
        fresh_requests = self._requests if old_requests is None else None
        fresh_tokens = self._tokens if old_tokens is None else None
        # Requests admitted before the limit was known count from now, not from when they were admitted:
        # the first ones open connections and may reach the provider tens of milliseconds late (more
        # than the guard), and the provider's window counts them from their arrival. Once, a few.
        recent = self._learned.recent(now)
        for _, tokens in recent:
            if fresh_requests is not None:
                fresh_requests.add(1, now)
            if fresh_tokens is not None:
                fresh_tokens.add(tokens, now)
        after = self._interval()
        if after is not None and before is None and recent:
            self._next_request_at = recent[-1][0] + after  # paced from the last request (the probe)
        elif before is not None and after is not None and math.isfinite(self._next_request_at):
            self._next_request_at += after - before
        advertised = self._learned.advertised
        log.info(
            "%s advertises %s requests and %s tokens per minute: enforcing %s RPM and %s TPM",
            self.name,
            advertised[0] or "no limit of",
            advertised[1] or "no limit of",
            _per_minute(rpm),
            _per_minute(tpm),
        )

    def _resized(self, window: Window | None, per_minute: float | None) -> Window | None:
        if per_minute is None:
            return window
        if window is None:
            return self._window(per_minute)
        window.full_cap = per_minute * self.limits.window_s / 60.0
        return window

    def _interval(self) -> float | None:
        """The pacing interval between requests (``None``: no request window, or no pacing)."""
        if self._requests is None or not self.limits.pace:
            return None
        return self._requests.span / max(self._requests.cap, EPSILON)

    def slot(self) -> AbstractAsyncContextManager[Slot]:
        """Hold one of the ``concurrency_limit`` slots for the duration of an ``async with`` (FIFO)."""
        return self._concurrency.slot()


def _per_minute(value: float | None) -> str:
    return "no" if value is None else f"{value:g}"


def _whole_part(quantum: float, index: int, parts: int) -> float:
    """Part ``index`` of ``parts`` of a quantum of requests, in whole requests when there are enough."""
    whole = math.floor(quantum + EPSILON)
    if whole < parts:
        return (whole if whole >= 1 else quantum) / parts
    return float(whole // parts + (1 if index < whole % parts else 0))
