"""Limits learned from the provider's headers: the probe, adoption, following changes, the ceiling, parts.

On the virtual clock of ``helpers.limiter`` (``FakeTime``): exact times, no sleeps.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers.limiter import SPAN, FakeTime, acquire_times, make, max_in_any_window

from batchrunner.models import RateLimitInfo
from batchrunner.policy.learnedlimits import PROBE_REQUESTS
from batchrunner.policy.ratelimit import ProviderLimiter
from batchrunner.providers.headers import anthropic_rate_limits, openai_rate_limits

RPM_600 = RateLimitInfo(limit_requests=600, remaining_requests=540)


def learning(clock: FakeTime, **limits: float | int | bool | None) -> ProviderLimiter:
    return make(clock, learn_from_headers=True, **limits)


async def test_the_probe_sends_a_few_requests_until_the_first_answer_then_its_limit_rules() -> None:
    clock = FakeTime()
    limiter = learning(clock)
    assert limiter.rate_limited and not any(limiter.limits_in_force)  # probing: nothing known yet
    probes = await acquire_times(limiter, clock, [0] * PROBE_REQUESTS)
    waiting = asyncio.ensure_future(acquire_times(limiter, clock, [0] * 10))
    await clock.advance(0.005)
    assert not waiting.done()  # nothing more before an answer, however many workers wait
    limiter.observe_headers(RPM_600)  # the answer, 5 ms later: 600 RPM = 10 a window
    await clock.advance(0)
    assert limiter.limits_in_force == (600.0, None)
    await clock.advance(2 * SPAN)
    stamps = await waiting
    # at once (not a probe window later), and the probes count in the window from their answer (they
    # may have reached the server late): 6 more, then 4 when the probes leave the window
    assert stamps == [pytest.approx(0.005)] * 6 + [pytest.approx(0.005 + SPAN)] * 4
    assert max_in_any_window([*probes, *stamps]) == 10


async def test_a_probe_waiter_woken_by_its_sleep_sends_the_next_probes() -> None:
    # the first answer takes longer than a window (or never comes): a few requests a window meanwhile
    clock = FakeTime(autojump=True)
    limiter = learning(clock)
    stamps = await acquire_times(limiter, clock, [0] * 9)
    assert stamps == [0.0] * 4 + [pytest.approx(SPAN)] * 4 + [pytest.approx(2 * SPAN)]


async def test_a_first_answer_without_limit_headers_ends_the_probe_and_nothing_waits() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock)
    await limiter.acquire(0)
    limiter.observe_headers(None)  # vLLM, Ollama: no rate-limit headers at all
    assert not limiter.rate_limited
    assert await acquire_times(limiter, clock, [0] * 50) == [0.0] * 50
    assert clock.sleeps == []


async def test_a_limit_advertised_later_is_adopted_counting_the_requests_sent_in_the_last_window() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock)
    await limiter.acquire(0)
    limiter.observe_headers(RateLimitInfo(remaining_requests=3))  # no limit said
    await acquire_times(limiter, clock, [0] * 7)  # 8 sent at 0 s
    clock.now = 0.5
    limiter.observe_headers(RPM_600)
    stamps = await acquire_times(limiter, clock, [0] * 3)
    assert stamps == [pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5 + SPAN)]  # 8 + 2 = 10


async def test_learned_limits_follow_the_provider_up_and_down() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock)
    await limiter.acquire(0)
    limiter.observe_headers(RateLimitInfo(limit_requests=300))  # 5 a window
    assert await acquire_times(limiter, clock, [0] * 5) == [0.0] * 4 + [pytest.approx(SPAN)]
    limiter.observe_headers(RateLimitInfo(limit_requests=1200))  # a tier upgrade: 20 a window
    stamps = await acquire_times(limiter, clock, [0] * 20)
    assert stamps == [pytest.approx(SPAN)] * 19 + [pytest.approx(2 * SPAN)]
    limiter.observe_headers(RateLimitInfo(remaining_requests=100))  # no limit header: it stays
    assert limiter.limits_in_force == (1200.0, None)
    limiter.observe_headers(RateLimitInfo(limit_requests=120))  # down to 2 a window
    clock.now = 10.0
    assert await acquire_times(limiter, clock, [0] * 3) == pytest.approx([10.0, 10.0, 10.0 + SPAN])


async def test_a_configured_limit_is_a_ceiling_that_a_lower_advertised_limit_lowers() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock, rpm=600)
    assert limiter.limits_in_force == (600.0, None)
    limiter.observe_headers(RateLimitInfo(limit_requests=6000))  # the provider would allow more
    assert limiter.limits_in_force == (600.0, None)
    stamps = await acquire_times(limiter, clock, [0] * 11)
    assert stamps == [0.0] * 10 + [pytest.approx(SPAN)]
    limiter.observe_headers(RateLimitInfo(limit_requests=120))  # the key's real limit is lower
    assert limiter.limits_in_force == (120.0, None)
    clock.now = 10.0
    assert await acquire_times(limiter, clock, [0] * 3) == pytest.approx([10.0, 10.0, 10.0 + SPAN])
    limiter.observe_headers(RateLimitInfo(limit_requests=6000))  # and back up: to the ceiling only
    assert limiter.limits_in_force == (600.0, None)


async def test_with_both_limits_configured_there_is_no_probe() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock, rpm=600, tpm=60_000)
    assert await acquire_times(limiter, clock, [0] * 10) == [0.0] * 10


async def test_with_one_limit_configured_the_other_is_probed_then_learned() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock, rpm=600)
    stamps = await acquire_times(limiter, clock, [100] * 5)  # the probe: 4 a window, not rpm's 10
    assert stamps == [0.0] * 4 + [pytest.approx(SPAN)]
    limiter.observe_headers(RateLimitInfo(limit_requests=6000, limit_tokens=18_000))  # 300 a window
    assert limiter.limits_in_force == (600.0, 18_000.0)
    stamps = await acquire_times(limiter, clock, [100] * 3)
    # the first 4 requests' tokens have left the window, the fifth's have not: 2 more fit
    assert stamps == [pytest.approx(SPAN)] * 2 + [pytest.approx(2 * SPAN)]


async def test_a_learned_token_limit_counts_the_tokens_sent_before_it_was_known() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock)
    await limiter.acquire(250)
    limiter.observe_headers(RateLimitInfo(limit_tokens=30_000))  # 500 tokens a window
    stamps = await acquire_times(limiter, clock, [250, 250])
    assert stamps == [0.0, pytest.approx(SPAN)]


async def test_a_learned_limit_is_split_among_runners_like_a_configured_one() -> None:
    clock = FakeTime(autojump=True)
    limiter = learning(clock)
    limiter.set_part(1, 2)
    # the probe too is shared: 2 requests a window for each of two runners (and 1 every 2 windows for
    # each of eight)
    assert await acquire_times(limiter, clock, [0] * 3) == pytest.approx([0.0, 0.0, SPAN])
    many_clock = FakeTime(autojump=True)
    one_of_eight = learning(many_clock)
    one_of_eight.set_part(7, 8)
    assert await acquire_times(one_of_eight, many_clock, [0] * 2) == pytest.approx([0.0, 2 * SPAN])
    limiter.observe_headers(RateLimitInfo(limit_requests=1200))  # 20 a window: 10 for this runner
    clock.now = 10.0
    stamps = await acquire_times(limiter, clock, [0] * 11)
    assert stamps == [pytest.approx(10.0)] * 10 + [pytest.approx(10.0 + SPAN)]
    limiter.set_part(0, 1)
    clock.now = 20.0
    assert await acquire_times(limiter, clock, [0] * 20) == [pytest.approx(20.0)] * 20


async def test_pacing_starts_from_the_probe_and_keeps_its_target_when_the_limit_changes() -> None:
    # paced at 600 RPM (one per 102.5 ms) from the probe on; the limit doubles: the next request comes
    # 51.25 ms after the last, not 102.5 ms, and not at once
    clock = FakeTime(autojump=True)
    limiter = learning(clock, pace=True)
    await limiter.acquire(0)
    limiter.observe_headers(RPM_600)
    stamps = await acquire_times(limiter, clock, [0] * 3)
    assert stamps == pytest.approx([SPAN / 10, 2 * SPAN / 10, 3 * SPAN / 10])
    limiter.observe_headers(RateLimitInfo(limit_requests=1200))
    assert await acquire_times(limiter, clock, [0]) == pytest.approx([3 * SPAN / 10 + SPAN / 20])


async def test_without_learning_advertised_limits_are_ignored() -> None:
    clock = FakeTime(autojump=True)
    limiter = make(clock)  # RateLimits() as a library user builds it: learning is off
    limiter.observe_headers(RPM_600)
    assert not limiter.rate_limited and limiter.limits_in_force == (None, None)
    assert await acquire_times(limiter, clock, [0] * 20) == [0.0] * 20


def test_limit_headers_are_parsed_for_both_wire_formats() -> None:
    openai = {"x-ratelimit-limit-requests": "120", "x-ratelimit-limit-tokens": "40000"}
    assert openai_rate_limits(openai) == RateLimitInfo(limit_requests=120, limit_tokens=40_000)
    assert openai_rate_limits({"x-ratelimit-limit-requests": "0"}) is None  # a broken header, no limit
    prefix = "anthropic-ratelimit-"
    combined = {prefix + "requests-limit": "50", prefix + "tokens-limit": "20000"}
    assert anthropic_rate_limits(combined, now=0) == RateLimitInfo(limit_requests=50, limit_tokens=20_000)
    # Anthropic's own API limits input and output apart: no combined TPM is learned from it
    split = {**combined, prefix + "input-tokens-limit": "40000", prefix + "output-tokens-limit": "8000"}
    assert anthropic_rate_limits(split, now=0) == RateLimitInfo(limit_requests=50)
