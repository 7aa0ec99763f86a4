"""The provider limiter: windows, oversized requests, settling, 429 pauses, AIMD and headers.

Almost every test runs on a virtual clock (``FakeTime``): the limiter's injected ``sleep`` parks the
caller until the test moves time forward, so the tests assert exact times and never sleep. Two tests
at the end run in real time to check the achieved rate with the real clock and ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from itertools import pairwise

import pytest
from helpers.limiter import SPAN, FakeTime, acquire_times, make, max_in_any_window, run_ready

from batchrunner.fakeserver.limits import SlidingWindowLimiter
from batchrunner.models import RateLimitInfo
from batchrunner.policy.concurrency import Slot
from batchrunner.policy.ratelimit import ProviderLimiter, RateLimits, Reservation


async def test_a_burst_is_one_quantum_then_one_quantum_per_window() -> None:
    # 600 RPM = 10 per second: 10 at once, the next 10 when the first leave the window (1 s + guard)
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, rpm=600), clock, [0] * 25)
    assert stamps == [0.0] * 10 + [pytest.approx(SPAN)] * 10 + [pytest.approx(2 * SPAN)] * 5
    assert max_in_any_window(stamps) == 10


async def test_long_run_rate_is_the_limit_less_the_guard() -> None:
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, rpm=3000), clock, [0] * 2001)  # 50 per second
    rate = 2000 / stamps[-1]
    assert 0.97 * 50 < rate <= 50
    assert rate == pytest.approx(50 / SPAN)
    assert max_in_any_window(stamps[:400]) == 50


async def test_below_60_rpm_each_request_holds_the_window_for_60_over_rpm_seconds() -> None:
    # 30 RPM: one request every 2 s (times the guard), never two in a window
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, rpm=30), clock, [0] * 4)
    assert stamps == pytest.approx([0.0, 2 * SPAN, 4 * SPAN, 6 * SPAN])


@pytest.mark.parametrize(("rpm", "tpm"), [(600, None), (None, 60_000), (1200, 90_000), (30, None)])
async def test_the_fake_servers_window_never_refuses_us(rpm: int | None, tpm: int | None) -> None:
    # what we admit, replayed into the fake server's limiter with 5-25 ms of network jitter: no 429
    clock, rng = FakeTime(autojump=True), random.Random(3)
    limiter, server = make(clock, rpm=rpm, tpm=tpm), SlidingWindowLimiter(rpm=rpm, tpm=tpm)
    arrivals = []
    for _ in range(300):
        tokens = rng.choice([50, 200, 700, 1200] if tpm is None or tpm >= 72_000 else [50, 200, 700])
        await limiter.acquire(tokens)
        arrivals.append((clock.now + rng.uniform(0.005, 0.025), tokens))
    refused = [stamp for stamp, tokens in sorted(arrivals) if not server.acquire(stamp, tokens).admitted]
    assert refused == []


async def test_a_fractional_quantum_rounds_down() -> None:
    # 90 RPM = 1.5 per second: one request per window (documented; as providers quantise)
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, rpm=90), clock, [0] * 3)
    assert stamps == pytest.approx([0.0, SPAN, 2 * SPAN])


async def test_tokens_per_window() -> None:
    # 60,000 TPM = 1,000 tokens per second: three 300-token requests per window
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, tpm=60_000), clock, [300] * 7)
    assert stamps == pytest.approx([0.0] * 3 + [SPAN] * 3 + [2 * SPAN])


async def test_rpm_and_tpm_together_the_stricter_wins() -> None:
    # 10 requests/s but only 1,000 tokens/s: 500-token requests go two per window
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, rpm=600, tpm=60_000), clock, [500] * 4)
    assert stamps == pytest.approx([0.0, 0.0, SPAN, SPAN])


async def test_an_oversized_request_goes_alone_and_holds_the_window_longer() -> None:
    # 6,000 TPM = 100 tokens per second; a 250-token request can never fit, yet must not deadlock
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, tpm=6_000), clock, [50, 250, 50])
    # the 250 waits for the window to empty (the 50 leaves at SPAN), then holds it for 2.5 windows
    assert stamps == pytest.approx([0.0, SPAN, SPAN + 2.5 * SPAN])


async def test_usage_above_the_reservation_is_charged() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock, tpm=60_000)
    reservation = await limiter.acquire(100)
    limiter.settle(reservation, 700)  # 600 more than reserved: the window holds 700 now
    assert (await acquire_times(limiter, clock, [300]))[0] == 0.0  # 1,000: fits exactly
    assert (await acquire_times(limiter, clock, [1]))[0] == pytest.approx(SPAN)


async def test_unused_tokens_stay_counted_by_default() -> None:
    # OpenAI and the fake server charge prompt + max_tokens up front: no refund within the window
    clock = FakeTime(autojump=True)
    limiter = make(clock, tpm=60_000)
    limiter.settle(await limiter.acquire(900), 100)
    assert (await acquire_times(limiter, clock, [300]))[0] == pytest.approx(SPAN)


async def test_unused_tokens_are_refunded_when_asked() -> None:
    # providers that settle to actual usage (Anthropic's output tokens): give the 800 back
    clock = FakeTime(autojump=True)
    limiter = make(clock, tpm=60_000, refund_unused=True)
    limiter.settle(await limiter.acquire(900), 100)
    assert (await acquire_times(limiter, clock, [900]))[0] == 0.0


async def test_settle_edge_cases() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock, tpm=60_000, refund_unused=True)
    reservation = await limiter.acquire(900)
    limiter.settle(reservation, None)  # usage unknown: the reservation stands
    assert (await acquire_times(limiter, clock, [200]))[0] == pytest.approx(SPAN)
    with pytest.raises(ValueError, match="already settled"):
        limiter.settle(reservation, 10)
    late = await limiter.acquire(500)
    await clock.sleep(10.0)
    limiter.settle(late, 0)  # refunding an entry that already left the window changes nothing
    assert (await acquire_times(limiter, clock, [1000]))[0] == pytest.approx(SPAN + 10.0)
    assert repr(late) == "Reservation(tokens=500, settled=True)"


async def test_without_limits_nothing_waits() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock)
    reservation = await limiter.acquire(10**9)
    limiter.settle(reservation, 5)
    assert isinstance(reservation, Reservation)
    assert clock.sleeps == []


async def test_waiters_are_served_first_in_first_out() -> None:
    # a big request that arrived first is not starved by small ones behind it
    clock = FakeTime()
    limiter = make(clock, tpm=60_000)
    await limiter.acquire(800)
    order: list[int] = []

    async def request(tokens: int) -> None:
        await limiter.acquire(tokens)
        order.append(tokens)

    tasks = [asyncio.create_task(request(n)) for n in (900, 10, 20, 30)]
    await clock.advance(0.5)
    assert order == []  # the 10 would fit now, but the 900 is ahead of it
    await clock.advance(SPAN)
    assert order == [900, 10, 20, 30]  # 960 tokens: all in the second window, in arrival order
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_lets_the_next_one_through() -> None:
    clock = FakeTime()
    limiter = make(clock, rpm=60)
    await limiter.acquire(0)
    first = asyncio.create_task(limiter.acquire(0))
    second = asyncio.create_task(limiter.acquire(0))
    await clock.advance(0.1)
    first.cancel()
    await clock.advance(SPAN)
    assert second.done() and first.cancelled()
    await second


async def test_an_isolated_429_delays_only_its_own_job() -> None:
    # 14 429s among 100 answers: random refusals from a busy backend, not our limit. Nothing pauses and
    # the concurrency stays (the job's own retry waits out its Retry-After).
    clock = FakeTime(autojump=True)
    limiter = make(clock, rpm=600, max_concurrency=16)
    for n in range(100):
        if n % 7 == 0 and n < 98:
            assert limiter.on_rate_limited(None, retry_after=5.0) is None
        else:
            limiter.on_success()
    assert limiter.paused_until == -math.inf
    assert limiter.concurrency_limit == 16
    await limiter.acquire(1)
    assert clock.now == 0.0


async def test_a_429_storm_pauses_the_whole_provider_and_cuts_concurrency() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock, rpm=600, max_concurrency=16, storm_count=3, storm_window=10)
    for _ in range(8):
        limiter.on_success()
    assert limiter.on_rate_limited(None, retry_after=5.0) is None
    assert limiter.on_rate_limited(None, retry_after=5.0) is None  # 2 of the last 10
    deadline = limiter.on_rate_limited(None, retry_after=5.0)  # 3 of the last 10: a storm
    assert deadline is not None and 5.0 <= deadline <= 6.0
    assert limiter.paused_until == deadline
    assert limiter.concurrency_limit == 8
    await limiter.acquire(1)
    assert clock.now == pytest.approx(deadline)
    # the storm passes: once the 429s leave the last 10 answers, a 429 is isolated again
    for _ in range(10):
        limiter.on_success()
    assert limiter.on_rate_limited(None, retry_after=5.0) is None


async def test_a_storm_pause_holds_every_request_until_retry_after_plus_jitter() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock, rpm=600, pause_jitter_s=1.0, storm_count=1)
    deadline = limiter.on_rate_limited(None, retry_after=5.0)
    assert deadline is not None and 5.0 <= deadline <= 6.0
    assert limiter.paused_until == deadline
    await limiter.acquire(1)
    assert clock.now == pytest.approx(deadline)
    # an earlier pause never shortens a later one
    limiter.pause_until(0.0)
    assert limiter.paused_until == deadline


# (retry_after, lowest pause, highest pause)
PAUSES: list[tuple[float | None, float, float]] = [
    # no Retry-After: the default 1 s, plus up to 1 s of jitter
    (None, 1.0, 2.0),
    # Retry-After 0: no pause at all (the jitter is proportional to the delay)
    (0.0, 0.0, 0.0),
    # 100 ms is not stretched to a second: at most as much jitter again
    (0.1, 0.1, 0.2),
    # garbage is the default
    (math.nan, 1.0, 2.0),
    (-3.0, 1.0, 2.0),
    (math.inf, 1.0, 2.0),
    # a day is capped at 300 s
    (86_400.0, 300.0, 301.0),
]


@pytest.mark.parametrize(("retry_after", "low", "high"), PAUSES)
def test_pause_lengths(retry_after: float | None, low: float, high: float) -> None:
    limiter = make(FakeTime(), storm_count=1)
    deadline = limiter.on_rate_limited(None, retry_after=retry_after)
    assert deadline is not None and low <= deadline <= high


async def test_429s_halve_concurrency_once_per_generation_and_successes_recover_it() -> None:
    limiter = make(FakeTime(), max_concurrency=16, min_concurrency=3, successes_per_increase=2, storm_count=1)
    async with limiter.slot() as old, limiter.slot() as also_old:
        limiter.on_rate_limited(old)
        assert limiter.concurrency_limit == 8
        limiter.on_rate_limited(also_old)  # in flight before the cut: tells us nothing new
        assert limiter.concurrency_limit == 8
        async with limiter.slot() as new:
            assert new == Slot(generation=1)
            limiter.on_rate_limited(new)  # started after the cut and still limited: cut again
            assert limiter.concurrency_limit == 4
    limiter.on_rate_limited(None)  # without a slot, always cut ... down to the floor
    assert limiter.concurrency_limit == 3
    for _ in range(2 * 20):  # +1 per 2 successes, up to the maximum
        limiter.on_success()
    assert limiter.concurrency_limit == 16


async def test_slots_wait_for_a_free_one_in_order() -> None:
    limiter = make(FakeTime(), max_concurrency=2)
    entered: list[int] = []
    release = asyncio.Event()

    async def worker(n: int) -> None:
        async with limiter.slot():
            entered.append(n)
            await release.wait()

    tasks = [asyncio.create_task(worker(n)) for n in range(4)]
    await run_ready()
    assert entered == [0, 1] and limiter.in_flight == 2
    release.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2, 3] and limiter.in_flight == 0


async def test_a_cut_blocks_new_slots_and_recovery_wakes_them() -> None:
    limiter = make(FakeTime(), max_concurrency=2, min_concurrency=1, successes_per_increase=1, storm_count=1)
    async with limiter.slot() as slot:
        limiter.on_rate_limited(slot)
        assert limiter.concurrency_limit == 1
        waiter = asyncio.create_task(_enter_and_leave(limiter))
        await run_ready()
        assert not waiter.done()  # 1 in flight, limit 1
        limiter.on_success(slot)  # limit back to 2: the waiter gets in
        await run_ready()
        assert waiter.done()
    assert limiter.in_flight == 0


async def _enter_and_leave(limiter: ProviderLimiter) -> None:
    async with limiter.slot():
        pass


async def test_a_cancelled_slot_waiter_does_not_leak_a_slot() -> None:
    limiter = make(FakeTime(), max_concurrency=1)
    async with limiter.slot():
        waiter = asyncio.create_task(_enter_and_leave(limiter))
        await run_ready()
        waiter.cancel()
        await run_ready()
    assert waiter.cancelled()
    assert limiter.in_flight == 0
    await _enter_and_leave(limiter)  # the slot is free again


async def test_a_slot_granted_then_cancelled_is_given_back() -> None:
    limiter = make(FakeTime(), max_concurrency=1)
    async with limiter.slot():
        waiter = asyncio.create_task(_enter_and_leave(limiter))
        await run_ready()
    waiter.cancel()  # granted at the exit above, cancelled before it could run
    await run_ready()
    assert waiter.cancelled()
    assert limiter.in_flight == 0


async def test_headers_with_nothing_remaining_hold_dispatch_until_the_reset() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock, rpm=600)
    limiter.observe_headers(RateLimitInfo(remaining_requests=0, reset_requests_s=0.3))
    await limiter.acquire(0)
    assert clock.now == pytest.approx(0.3)


async def test_headers_with_little_remaining_allow_only_that_much() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock, rpm=600, tpm=60_000)
    await limiter.acquire(100)
    # the provider has 3 requests left (our window still allows 9) and plenty of tokens
    limiter.observe_headers(RateLimitInfo(remaining_requests=3, remaining_tokens=50_000))
    stamps = await acquire_times(limiter, clock, [100] * 4)
    assert stamps == pytest.approx([0.0, 0.0, 0.0, SPAN])


async def test_headers_that_say_plenty_change_nothing() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock, rpm=600, tpm=60_000)
    limiter.observe_headers(None)
    limiter.observe_headers(
        RateLimitInfo(remaining_requests=590, remaining_tokens=59_000, reset_tokens_s=0.1)
    )
    limiter.observe_headers(
        RateLimitInfo(remaining_requests=None, remaining_tokens=0, reset_tokens_s=math.nan)
    )
    stamps = await acquire_times(limiter, clock, [0] * 10)
    assert stamps == [0.0] * 10  # requests untouched; 0 tokens fit a full token window


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rpm": 0},  # a zero limit would block forever: use None for "no limit"
        {"tpm": math.inf},
        {"max_concurrency": 0},
        {"min_concurrency": 5, "max_concurrency": 4},
        {"successes_per_increase": 0},
        {"window_s": 0.0},
        {"guard_s": -0.1},
        {"pause_jitter_s": math.nan},
    ],
)
def test_limits_reject_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimits(**kwargs)  # type: ignore[arg-type]


async def _real_time_run(limiter: ProviderLimiter, tokens: int, seconds: float) -> list[float]:
    """Many workers acquire as fast as the limiter lets them for ``seconds`` of real time."""
    start = time.monotonic()
    stamps: list[float] = []

    async def worker() -> None:
        while True:
            await limiter.acquire(tokens)
            stamps.append(time.monotonic() - start)

    workers = [asyncio.create_task(worker()) for _ in range(30)]
    await asyncio.sleep(seconds)
    for task in workers:
        task.cancel()  # also checks that waiters cancelled mid-wait leave cleanly
    await asyncio.gather(*workers, return_exceptions=True)
    return [s for s in stamps if s < seconds]


@pytest.mark.slow  # 2 s of real time
async def test_real_time_rpm() -> None:
    # 1,200 RPM = 20 per second: over 2 s, 95-100 % of 40 requests, never more than 20 (+1) in a second
    stamps = await _real_time_run(ProviderLimiter(RateLimits(rpm=1200)), tokens=0, seconds=2.0)
    assert 0.95 * 40 <= len(stamps) <= 40
    assert max_in_any_window(stamps) <= 20 + 1


@pytest.mark.slow  # 2 s of real time
async def test_real_time_tpm() -> None:
    # 60,000 TPM = 1,000 tokens per second in 250-token requests: 95-100 % of 2,000 tokens in 2 s
    stamps = await _real_time_run(ProviderLimiter(RateLimits(tpm=60_000)), tokens=250, seconds=2.0)
    assert 0.95 * 2_000 <= 250 * len(stamps) <= 2_000
    assert max_in_any_window(stamps, [250] * len(stamps)) <= 1_000 + 250


async def test_a_part_of_the_limits_for_one_of_several_runners() -> None:
    # Three runners split 600 RPM = 10 requests a window in whole requests: 4, 3 and 3 (a third each,
    # 3.33, would round down to 3 and leave one request of every window unused).
    clock = FakeTime(autojump=True)
    limiter = make(clock, rpm=600, tpm=60_000)
    limiter.set_part(2, 3)
    stamps = await acquire_times(limiter, clock, [100] * 7)
    assert stamps == [0.0] * 3 + [pytest.approx(SPAN)] * 3 + [pytest.approx(2 * SPAN)]
    first_clock = FakeTime(autojump=True)
    first = make(first_clock, rpm=600, tpm=60_000)
    first.set_part(0, 3)
    assert await acquire_times(first, first_clock, [0] * 5) == [0.0] * 4 + [pytest.approx(SPAN)]
    limiter.set_part(0, 1)  # the others stopped: the whole limit again
    assert limiter.part == (0, 1)
    more = await acquire_times(limiter, clock, [0] * 10)
    assert max_in_any_window([stamps[-1], *more]) == 10  # the 7th request is still in the window
    with pytest.raises(ValueError, match="part"):
        limiter.set_part(3, 3)


@pytest.mark.parametrize(
    ("rpm", "parts", "expected"),
    [
        (3000, 3, [17, 17, 16]),  # 50 a window: the parts add up to the quantum, none rounds down
        (600, 4, [3, 3, 2, 2]),
        (600, 1, [10]),
        (90, 1, [1]),  # 1.5 a window: whole requests only, as the provider quantises
        (120, 3, [2 / 3] * 3),  # fewer whole requests than runners: a fraction each
        (30, 2, [0.25, 0.25]),  # below one request a window: a request holds it for longer
    ],
)
async def test_the_request_quantum_is_dealt_out_in_whole_requests(
    rpm: int, parts: int, expected: list[float]
) -> None:
    """What each part admits: ``cap`` requests at once when it is whole; else one per ``SPAN / cap``."""
    for index, cap in enumerate(expected):
        clock = FakeTime(autojump=True)
        limiter = make(clock, rpm=rpm)
        limiter.set_part(index, parts)
        if cap >= 1:
            stamps = await acquire_times(limiter, clock, [0] * (int(cap) + 1))
            assert stamps == [0.0] * int(cap) + [pytest.approx(SPAN)]
        else:
            assert await acquire_times(limiter, clock, [0] * 2) == [0.0, pytest.approx(SPAN / cap)]


async def test_paced_requests_are_evenly_spaced_at_the_same_rate() -> None:
    # 600 RPM = 10 per window: one every 102.5 ms (window + guard over the quantum), never a burst.
    clock = FakeTime(autojump=True)
    stamps = await acquire_times(make(clock, rpm=600, pace=True), clock, [0] * 41)
    gaps = [b - a for a, b in pairwise(stamps)]
    assert gaps == [pytest.approx(SPAN / 10)] * 40
    assert 40 / stamps[-1] == pytest.approx(10 / SPAN)
    assert max_in_any_window(stamps) == 10


async def test_pacing_does_not_drift_when_waiters_wake_late() -> None:
    # A busy event loop wakes every sleeper 3 ms late. Spacing is counted from each request's target
    # time, so the lateness does not add up per request (counted from the wake-up time, 40 requests
    # would take 40 x 3 ms = 120 ms longer); only the window's own wait meets it, once per quantum.
    late_clock = FakeTime(autojump=True)

    async def late_sleep(delay: float) -> None:
        await late_clock.sleep(delay + 0.003)

    limiter = ProviderLimiter(
        RateLimits(rpm=600, pace=True), clock=late_clock, sleep=late_sleep, rng=random.Random(1)
    )
    stamps = []
    for _ in range(41):
        await limiter.acquire(0)
        stamps.append(late_clock.now)
    assert 40 * SPAN / 10 <= stamps[-1] <= 40 * SPAN / 10 + 5 * 0.003
    assert max_in_any_window(stamps) <= 10


def test_try_acquire_admits_only_without_waiting() -> None:
    clock = FakeTime()
    limiter = make(clock, rpm=120)  # 2 per window
    assert limiter.try_acquire(0) is not None
    assert limiter.try_acquire(0) is not None
    assert limiter.try_acquire(0) is None  # the window is full: acquire() would wait
