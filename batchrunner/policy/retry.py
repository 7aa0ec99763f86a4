"""The pure retry policy: what to do after a failed attempt, as data (docs/reliability.md rule 6).

The SDK clients are built with ``max_retries=0`` so that every attempt passes through batchrunner's
limiter and is counted, costed and recorded. The provider adapters translate SDK errors into the
classes of :mod:`batchrunner.errors` (reading ``Retry-After`` and ``x-should-retry`` with
:mod:`batchrunner.providers.headers`); :func:`decide` turns such an error into a :class:`RetryDecision`.
Nothing here reads headers, sleeps, reads the clock or draws from the global random generator, so the
policy is tested from a table.

What each error class gets:

=============================================  ==================================================
``RunStoppingError`` (401/403, quota, billing)  ``STOP``: every job would fail alike (rule 7)
``PermanentError`` (400/404/422)                ``FAIL`` now, whatever the attempt
``RateLimited`` / ``Overloaded`` (429/529)      ``RETRY`` after ``retry_after`` (a floor, capped at
                                                ``max_server_delay``) plus full jitter
``TransientError`` / ``ProviderTimeout`` /      ``RETRY`` after exponential backoff with full jitter
``InvalidResponse``                             (``uniform(0, min(max_delay, base * factor**(n-1)))``)
a bare ``ProviderError``                        ``FAIL``: the adapter did not classify it, which is a
                                                bug there; retrying blindly would spend money on it
=============================================  ==================================================

A retryable error on the last allowed attempt (``attempt >= max_attempts``) fails the job.

Why full jitter: after a provider hiccup every failed job retries; spreading them uniformly over
``[0, ceiling]`` (AWS "Exponential Backoff And Jitter") avoids a synchronised second wave. For 429s
the server's delay is honoured as a *floor* and the same jitter is added on top, so jobs told "retry
after 2 s" do not all come back at exactly 2 s.

Why cap server delays at 300 s (``max_server_delay``): a batch must keep moving, and a long
``Retry-After`` is usually a daily quota or a misconfigured proxy; after a 5-minute wait the job
simply tries again (and fails after ``max_attempts``). The OpenAI SDK refuses to retry beyond 120 s;
batchrunner waits longer because it retries in the background without blocking other jobs.
The longest possible delay is therefore ``max_server_delay + max_delay`` (360 s by default).

Why a 0.25 s base growing 3x (ceilings 0.25, 0.75, 2.25, 6.75, 20.25 s for the five retries): the
first retries of an isolated failure come back fast, so a few unlucky jobs do not make a tail (with 5%
500s and 5% 429s a run takes 1.24x a clean one, against 1.48x with a 1 s base doubling; BENCHMARKS.md),
while the ceilings still add up to about 30 s, as 1+2+4+8+16 did, so a short provider outage does not
use up a job's attempts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from batchrunner.errors import (
    PermanentError,
    ProviderError,
    RateLimited,
    RunStoppingError,
    TransientError,
)

__all__ = [
    "DEFAULT_POLICY",
    "MAX_SERVER_DELAY_S",
    "RetryAction",
    "RetryDecision",
    "RetryPolicy",
    "decide",
]

MAX_SERVER_DELAY_S = 300.0
"""The longest server-requested delay (``Retry-After``) that is honoured; longer ones are capped."""


class RetryAction(StrEnum):
    """What the runner does with a job after a failed attempt."""

    RETRY = "retry"
    """Put the job back to ``pending`` with ``not_before = now + delay``."""
    FAIL = "fail"
    """Mark the job ``failed``: a permanent error, or attempts exhausted."""
    STOP = "stop"
    """Stop the whole run (exit 3) and leave the job ``pending``; the attempt is not held against it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryDecision:
    """The policy's answer: an action, the delay before the next attempt (``RETRY`` only) and why."""

    action: RetryAction
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """The knobs of the retry policy; the defaults suit the OpenAI and Anthropic APIs.

    ``attempt`` numbers are 1-based and count the attempt that just failed (the job's ``attempts``
    column, incremented by the claim), so ``max_attempts=6`` means one call and up to five retries.
    """

    max_attempts: int = 6
    base_delay: float = 0.25
    """Ceiling of the jitter after the first failed attempt, in seconds."""
    factor: float = 3.0
    """Growth of the ceiling per further attempt."""
    max_delay: float = 60.0
    """Cap of the backoff ceiling (and of the jitter added on top of a server delay)."""
    max_server_delay: float = MAX_SERVER_DELAY_S
    """Cap of an honoured ``Retry-After``."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        for name in ("base_delay", "max_delay", "max_server_delay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"factor must be a finite number >= 1, not {self.factor!r}")

    def backoff_ceiling(self, attempt: int) -> float:
        """The upper bound of the full-jitter delay after failed attempt number ``attempt``."""
        try:
            ceiling = self.base_delay * self.factor ** min(attempt - 1, 1000)
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, ceiling)


DEFAULT_POLICY = RetryPolicy()


def decide(
    error: ProviderError, attempt: int, rng: random.Random, policy: RetryPolicy = DEFAULT_POLICY
) -> RetryDecision:
    """Decide what follows failed attempt number ``attempt`` (1-based) of a job that raised ``error``.

    ``rng`` is passed in (a seeded ``random.Random`` in tests, one per runner in production) so that
    the decision is a pure function of its arguments.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, not {attempt}")
    if isinstance(error, RunStoppingError):
        return RetryDecision(action=RetryAction.STOP, reason=f"{error.error_class}: stopping the run")
    if isinstance(error, PermanentError):
        return RetryDecision(action=RetryAction.FAIL, reason=f"{error.error_class}: not retryable")
    if not isinstance(error, RateLimited | TransientError):
        return RetryDecision(action=RetryAction.FAIL, reason=f"{error.error_class}: unclassified error")
    if attempt >= policy.max_attempts:
        return RetryDecision(
            action=RetryAction.FAIL,
            reason=f"{error.error_class}: {attempt} of {policy.max_attempts} attempts used",
        )
    jitter = rng.uniform(0.0, policy.backoff_ceiling(attempt))
    floor = _server_floor(error, policy) if isinstance(error, RateLimited) else 0.0
    return RetryDecision(
        action=RetryAction.RETRY,
        delay=floor + jitter,
        reason=f"{error.error_class}: retry {attempt + 1} of {policy.max_attempts}",
    )


def _server_floor(error: RateLimited, policy: RetryPolicy) -> float:
    """The server's ``retry_after``, made safe: garbage (negative, NaN, inf) is 0, long ones are capped."""
    value = error.retry_after
    if value is None or not math.isfinite(value) or value < 0:
        return 0.0
    return min(value, policy.max_server_delay)
