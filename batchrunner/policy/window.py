"""The sliding window that :mod:`batchrunner.policy.ratelimit` keeps per limit (requests, tokens).

Providers quantise per-minute limits into short windows ("600 RPM may be enforced as 10 requests per
second"), and so does batchrunner's fake server: at most ``rpm/60`` requests and ``tpm/60`` tokens in
*any* 1-second window, charging a request's prompt estimate plus ``max_tokens`` up front. A
:class:`Window` enforces the same rule on our side: it admits an amount only if the units admitted in
the last ``window_s + guard_s`` seconds, plus this one, fit in the 1-second quantum (``cap``). So a
burst never exceeds one quantum, and the long-run rate is ``quantum / (window_s + guard_s)`` (97.6 % of
the limit with the default 25 ms guard, which absorbs the jitter between our clock and the server's).
An amount above the quantum goes alone: it waits for an empty window and then holds it for
``amount / quantum`` windows, so there is no deadlock and the long-run rate holds.

Why not aiolimiter or asyncio-throttle (the named stack): asyncio-throttle counts requests only and
polls with a fixed sleep. aiolimiter is a leaky bucket that weights acquisitions, but (1) a bucket
of one quantum still lets *two* quanta through in the first second after it has been idle -- the
fill plus the drip; measured with ``AsyncLimiter(10, 1)``: 19 acquisitions in one 1-second window,
which a 1-second window server refuses; (2) ``acquire(amount)`` raises ``ValueError`` for an amount
above ``max_rate``, and a request of prompt + ``max_tokens`` often exceeds ``tpm/60``; (3) it cannot
return or add units after the call; (4) its waiters are a heap ordered by amount, so a large request
starves behind a stream of small ones; (5) its clock is the event loop's. A sliding window is a few
dozen lines (waiters queue first in, first out in the limiter). Cost, measured uncontended: about 6 us
per request for slot + acquire + settle (two aiolimiter acquisitions: about 1.3 us), nothing next to an
HTTP call; memory is one small entry per request admitted in the last window.

A window never reads the clock: every method takes ``now``, so the limiter's injected clock rules.
"""

from __future__ import annotations

import heapq
from itertools import count

__all__ = ["EPSILON", "Entry", "Window"]

EPSILON = 1e-9
"""Float slack for sums of units and for deadlines that are due."""


class Entry:
    """Units admitted into a window, counted until ``expires``; ``amount`` changes when settled."""

    __slots__ = ("amount", "expires", "live")

    def __init__(self, amount: float, expires: float) -> None:
        self.amount = amount
        self.expires = expires
        self.live = True


class Window:
    """At most ``cap`` units in any ``span`` seconds; an amount above ``cap`` goes alone, for longer."""

    __slots__ = ("_heap", "_order", "cap", "full_cap", "span", "used")

    def __init__(self, *, per_minute: float, window_s: float, guard_s: float) -> None:
        self.full_cap = per_minute * window_s / 60.0  # the whole limit's quantum
        self.cap = self.full_cap  # this runner's part of it (ProviderLimiter.set_part)
        self.span = window_s + guard_s
        self.used = 0.0
        self._heap: list[tuple[float, int, Entry]] = []
        self._order = count()

    def prune(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now + EPSILON:
            entry = heapq.heappop(heap)[2]
            entry.live = False
            self.used -= entry.amount
        if not heap:
            self.used = 0.0  # drop accumulated float error

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0: now)."""
        self.prune(now)
        allowed = self.cap - amount if amount <= self.cap + EPSILON else 0.0
        excess = self.used - allowed
        if excess <= EPSILON:
            return 0.0
        for expires, _, entry in sorted(self._heap):
            excess -= entry.amount
            if excess <= EPSILON:
                return expires - now
        return max(expires for expires, _, _ in self._heap) - now  # pragma: no cover - float slack only

    def add(self, amount: float, now: float, *, hold: float | None = None) -> Entry | None:
        if amount <= 0:
            return None
        span = self.span * max(1.0, amount / self.cap) if hold is None else hold
        entry = Entry(amount, now + span)
        heapq.heappush(self._heap, (entry.expires, next(self._order), entry))
        self.used += amount
        return entry

    def resize(self, entry: Entry, amount: float) -> None:
        """Change what a still-counted entry holds (its expiry stays)."""
        if entry.live:
            self.used += amount - entry.amount
            entry.amount = amount

    def cap_remaining(self, remaining: float, now: float, hold: float) -> None:
        """Fill the window so that at most ``remaining`` more units fit until ``now + hold``."""
        self.prune(now)
        filler = self.cap - self.used - max(0.0, remaining)
        if filler > EPSILON:
            self.add(filler, now, hold=hold)
