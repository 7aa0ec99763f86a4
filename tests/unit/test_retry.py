"""The retry policy, from tables: one row per case, each with its reason (headers: test_providers_headers)."""

from __future__ import annotations

import math
import random

import pytest

from batchrunner.errors import (
    InvalidResponse,
    Overloaded,
    PermanentError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RunStoppingError,
    TransientError,
)
from batchrunner.policy.retry import (
    DEFAULT_POLICY,
    RetryAction,
    RetryDecision,
    RetryPolicy,
    decide,
)

RETRY, FAIL, STOP = RetryAction.RETRY, RetryAction.FAIL, RetryAction.STOP

# (error, attempt, expected action, lowest allowed delay, highest allowed delay)
DECISIONS: list[tuple[ProviderError, int, RetryAction, float, float]] = [
    # transient errors back off with full jitter: [0, 0.25 s] after the first attempt ...
    (TransientError(status_code=500), 1, RETRY, 0.0, 0.25),
    # ... [0, 0.75 s] after the second, tripling ...
    (TransientError(status_code=503), 2, RETRY, 0.0, 0.75),
    # ... [0, 20.25 s] after the fifth; 5 < max_attempts 6 so one more try
    (TransientError(status_code=502), 5, RETRY, 0.0, 20.25),
    # the sixth failure exhausts the default 6 attempts
    (TransientError(status_code=500), 6, FAIL, 0.0, 0.0),
    # attempts beyond the limit (e.g. the limit was lowered between runs) fail too
    (TransientError(status_code=500), 40, FAIL, 0.0, 0.0),
    # timeouts and invalid 200 bodies are transient
    (ProviderTimeout(possibly_billed=True), 3, RETRY, 0.0, 2.25),
    (InvalidResponse(status_code=200), 1, RETRY, 0.0, 0.25),
    # a 429 with Retry-After 2 s waits at least 2 s, plus up to 0.25 s of jitter on attempt 1
    (RateLimited(retry_after=2.0), 1, RETRY, 2.0, 2.25),
    # the jitter on top of a server delay grows with the attempt like the backoff (2.25 s on attempt 3)
    (RateLimited(retry_after=2.0), 3, RETRY, 2.0, 4.25),
    # a 429 without Retry-After is plain backoff
    (RateLimited(), 2, RETRY, 0.0, 0.75),
    # Retry-After 0 means "now": only the jitter remains
    (RateLimited(retry_after=0.0), 1, RETRY, 0.0, 0.25),
    # an absurd Retry-After is capped at 300 s (plus jitter)
    (RateLimited(retry_after=86_400.0), 1, RETRY, 300.0, 300.25),
    # negative, NaN and infinite Retry-After are garbage: plain backoff, never a negative/NaN/inf sleep
    (RateLimited(retry_after=-5.0), 1, RETRY, 0.0, 0.25),
    (RateLimited(retry_after=math.nan), 1, RETRY, 0.0, 0.25),
    (RateLimited(retry_after=math.inf), 1, RETRY, 0.0, 0.25),
    # 529 overloaded is a rate limit and honours its delay the same way
    (Overloaded(retry_after=10.0, status_code=529), 2, RETRY, 10.0, 10.75),
    # rate limits also exhaust attempts
    (RateLimited(retry_after=1.0), 6, FAIL, 0.0, 0.0),
    # 400/404/422 fail at once, even on the first attempt
    (PermanentError(status_code=400), 1, FAIL, 0.0, 0.0),
    # 401/403/quota stop the run, even on the last attempt (the job stays pending)
    (RunStoppingError(status_code=401), 1, STOP, 0.0, 0.0),
    (RunStoppingError(status_code=429), 6, STOP, 0.0, 0.0),
    # an error the adapter did not classify fails: never retry (and pay) blindly
    (ProviderError("unknown"), 1, FAIL, 0.0, 0.0),
]


@pytest.mark.parametrize(("error", "attempt", "action", "low", "high"), DECISIONS)
def test_decide(error: ProviderError, attempt: int, action: RetryAction, low: float, high: float) -> None:
    rng = random.Random(1234)
    for _ in range(200):  # many draws: every one must stay within the bounds
        decision = decide(error, attempt, rng)
        assert decision.action is action
        assert math.isfinite(decision.delay)
        assert low <= decision.delay <= high, decision
        assert decision.reason.startswith(error.error_class)


def test_jitter_spreads_over_the_whole_range() -> None:
    # full jitter: the delays cover [0, ceiling], not a narrow band near the ceiling
    rng = random.Random(7)
    delays = [decide(TransientError(), 4, rng).delay for _ in range(2000)]  # ceiling 0.25 * 3**3
    assert min(delays) < 0.1 * 6.75
    assert max(delays) > 0.9 * 6.75
    assert 3.0 < sum(delays) / len(delays) < 3.75  # mean of uniform(0, 6.75) is 3.375


def test_same_seed_same_decisions() -> None:
    # the policy is pure: the same rng state gives the same delays
    first = [decide(RateLimited(retry_after=1.0), n, random.Random(99)) for n in range(1, 6)]
    again = [decide(RateLimited(retry_after=1.0), n, random.Random(99)) for n in range(1, 6)]
    assert first == again


# (policy, attempt, expected ceiling)
CEILINGS: list[tuple[RetryPolicy, int, float]] = [
    # base 0.25 s, factor 3: 0.25, 0.75, 2.25 ...
    (DEFAULT_POLICY, 1, 0.25),
    (DEFAULT_POLICY, 3, 2.25),
    # the five retries of the default 6 attempts: about 30 s of ceilings in all
    (DEFAULT_POLICY, 5, 20.25),
    # capped at 60 s from the 6th attempt (0.25 * 3**5 = 60.75)
    (DEFAULT_POLICY, 6, 60.0),
    # huge attempt numbers do not overflow
    (DEFAULT_POLICY, 10**9, 60.0),
    (RetryPolicy(factor=1e300), 5, 60.0),
    # custom knobs
    (RetryPolicy(base_delay=0.5, factor=3.0, max_delay=10.0), 3, 4.5),
]


@pytest.mark.parametrize(("policy", "attempt", "ceiling"), CEILINGS)
def test_backoff_ceiling(policy: RetryPolicy, attempt: int, ceiling: float) -> None:
    assert policy.backoff_ceiling(attempt) == ceiling


def test_custom_policy_caps_and_attempts() -> None:
    policy = RetryPolicy(max_attempts=2, max_server_delay=30.0, max_delay=5.0)
    rng = random.Random(0)
    # the server delay is capped at the policy's 30 s, the jitter at its base 1 s
    assert 30.0 <= decide(RateLimited(retry_after=999.0), 1, rng, policy).delay <= 31.0
    assert decide(TransientError(), 2, rng, policy) == RetryDecision(
        action=FAIL, reason="transient: 2 of 2 attempts used"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},  # at least one attempt
        {"base_delay": -1.0},  # no negative delays
        {"max_delay": math.inf},  # no infinite caps
        {"max_server_delay": math.nan},  # no NaN caps
        {"factor": 0.5},  # backoff never shrinks
    ],
)
def test_policy_rejects_bad_knobs(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        decide(TransientError(), 0, random.Random(0))
