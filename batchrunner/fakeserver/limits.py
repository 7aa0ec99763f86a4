"""Server-side RPM/TPM limits over a sliding window, the way providers quantise per-minute limits.

A limit of ``rpm`` requests per minute enforced over a ``window_s`` window admits at most
``floor(rpm * window_s / 60)`` requests (at least 1) in *any* interval of ``window_s`` seconds; the same for
tokens with ``tpm``. With the default 1 s window, 600 RPM means "at most 10 requests in any second": a client
that bursts 600 requests at the top of a minute is refused, as real APIs refuse it.

Tokens for a request are what providers charge against TPM up front: estimated input tokens + ``max_tokens``.
Refused requests take no room in the window. Time is passed in (``now``, in seconds of a monotonic clock), so
the tests control it instead of sleeping.

Headers report per-minute numbers: ``limit`` is the configured RPM/TPM; ``remaining`` is what the window
still admits, scaled to per-minute units (so it is 0 exactly when the next request would be refused);
``reset`` is the time until the window is empty again.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitSnapshot:
    """The state of one limit (requests or tokens) for the rate-limit headers."""

    limit: int
    """Per minute, as configured."""
    remaining: int
    """What the window still admits, in per-minute units."""
    reset_s: float
    """Seconds until the window is empty."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The limiter's answer for one request."""

    admitted: bool
    retry_after_s: float = 0.0
    """When refused: seconds until a retry can be admitted (if nothing else arrives)."""
    refused_by: str | None = None
    """``"requests"`` or ``"tokens"`` when refused."""
    requests: LimitSnapshot | None = None
    tokens: LimitSnapshot | None = None
    used: int = 0
    """When refused: what the window holds of the limit that refused (for the error message)."""


class SlidingWindowLimiter:
    """RPM and/or TPM over a sliding window: a log of admitted requests, pruned as they age out."""

    __slots__ = ("_log", "_req_cap", "_rpm", "_scale", "_tok_cap", "_tokens", "_tpm", "_window")

    def __init__(self, *, rpm: int | None, tpm: int | None, window_s: float = 1.0) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._rpm = rpm
        self._tpm = tpm
        self._window = window_s
        self._scale = 60.0 / window_s
        self._req_cap = None if rpm is None else max(1, math.floor(rpm * window_s / 60.0))
        self._tok_cap = None if tpm is None else max(1, math.floor(tpm * window_s / 60.0))
        self._log: deque[tuple[float, int]] = deque()
        self._tokens = 0

    @property
    def window_caps(self) -> tuple[int | None, int | None]:
        """(requests, tokens) admitted per window; ``None`` for a limit that is off."""
        return self._req_cap, self._tok_cap

    def clear(self) -> None:
        self._log.clear()
        self._tokens = 0

    def acquire(self, now: float, tokens: int) -> Verdict:
        """Admit (and record) a request costing ``tokens`` at time ``now``, or refuse it."""
        self._prune(now)
        if self._req_cap is not None and len(self._log) + 1 > self._req_cap:
            retry = self._log[0][0] + self._window - now
            return self._refuse("requests", retry, len(self._log), now)
        if self._tok_cap is not None and self._tokens + tokens > self._tok_cap:
            return self._refuse("tokens", self._token_wait(now, tokens), self._tokens, now)
        self._log.append((now, tokens))
        self._tokens += tokens
        return Verdict(
            admitted=True, requests=self._snapshot_requests(now), tokens=self._snapshot_tokens(now)
        )

    def _prune(self, now: float) -> None:
        horizon = now - self._window
        log = self._log
        while log and log[0][0] <= horizon:
            self._tokens -= log.popleft()[1]

    def _refuse(self, by: str, retry_after: float, used: int, now: float) -> Verdict:
        return Verdict(
            admitted=False,
            retry_after_s=max(0.0, retry_after),
            refused_by=by,
            requests=self._snapshot_requests(now),
            tokens=self._snapshot_tokens(now),
            used=used,
        )

    def _token_wait(self, now: float, tokens: int) -> float:
        """Seconds until enough tokens age out for ``tokens`` to fit (a full window if they never can)."""
        assert self._tok_cap is not None
        if tokens > self._tok_cap:
            return self._window
        excess = self._tokens + tokens - self._tok_cap
        for stamp, cost in self._log:  # usually stops at the first entry or two
            excess -= cost
            if excess <= 0:
                return stamp + self._window - now
        return self._window  # pragma: no cover - the loop always frees enough

    def _reset_s(self, now: float) -> float:
        return max(0.0, self._log[-1][0] + self._window - now) if self._log else 0.0

    def _snapshot_requests(self, now: float) -> LimitSnapshot | None:
        if self._rpm is None or self._req_cap is None:
            return None
        remaining = math.floor((self._req_cap - len(self._log)) * self._scale)
        return LimitSnapshot(limit=self._rpm, remaining=max(0, remaining), reset_s=self._reset_s(now))

    def _snapshot_tokens(self, now: float) -> LimitSnapshot | None:
        if self._tpm is None or self._tok_cap is None:
            return None
        remaining = math.floor((self._tok_cap - self._tokens) * self._scale)
        return LimitSnapshot(limit=self._tpm, remaining=max(0, remaining), reset_s=self._reset_s(now))
