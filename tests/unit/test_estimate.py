"""The estimate's arithmetic (batchrunner.policy.estimate), against figures computed by hand in comments."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batchrunner.models import Endpoint
from batchrunner.policy.estimate import BATCH_WINDOW_S, Answered, JobTally, Pace, build_estimate
from batchrunner.policy.pricing import BUILTIN_PRICES

CHAT = Endpoint.CHAT_COMPLETIONS


def _chat(text: str, max_tokens: int | None = None) -> dict[str, object]:
    body: dict[str, object] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def _tally() -> JobTally:
    tally = JobTally()
    # "user" (4 bytes) + 40 bytes = 44 bytes -> 11 tokens, + 4 for the message + 3 for the request = 18
    for _ in range(10):
        tally.add("openai", "gpt-4o-mini", CHAT, _chat("x" * 40, max_tokens=100))
    # Anthropic: "user" + 96 bytes = 100 bytes -> 25 tokens + 4 + 3 = 32; max_tokens 200
    for _ in range(4):
        tally.add(
            "anthropic",
            "claude-haiku-4-5",
            Endpoint.MESSAGES,
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 200,
                "messages": [{"role": "user", "content": "y" * 96}],
            },
        )
    tally.add("local", "my-llama", CHAT, _chat("z" * 8))  # 12 bytes -> 3 + 4 + 3 = 10; no cap: 1,024
    return tally


PACES = {
    "openai": Pace(rpm=60, tpm=600, concurrency=4, batch_api=True),
    "anthropic": Pace(concurrency=2, batch_api=True),
    "local": Pace(concurrency=1),
}


def test_tokens_and_costs_by_model_in_realtime_mode() -> None:
    estimate = build_estimate(_tally(), prices=BUILTIN_PRICES, paces=PACES)
    by_model = {m.model: m for m in estimate.models}
    openai, claude, llama = by_model["gpt-4o-mini"], by_model["claude-haiku-4-5"], by_model["my-llama"]
    assert (openai.jobs, openai.input_tokens, openai.max_output_tokens) == (10, 180, 1_000)
    assert (claude.jobs, claude.input_tokens, claude.max_output_tokens) == (4, 128, 800)
    assert (llama.jobs, llama.input_tokens, llama.max_output_tokens) == (1, 10, 1_024)
    # no answers yet: half of the caps
    assert (openai.expected_output_tokens, claude.expected_output_tokens) == (500, 400)
    assert not openai.output_from_answers
    # gpt-4o-mini list: 180 x 0.15 + 500 x 0.60 = 27 + 300 = 327 per 1M; at most 27 + 600 = 627
    assert openai.list_cost_expected == Decimal("0.000327")
    assert openai.list_cost_max == Decimal("0.000627")
    # ... batch: half
    assert openai.batch_cost_expected == Decimal("0.0001635")
    # claude-haiku-4-5 list: 128 x 1.00 + 400 x 5.00 = 2,128 per 1M; at most 128 + 4,000 = 4,128
    assert claude.list_cost_expected == Decimal("0.002128")
    assert claude.list_cost_max == Decimal("0.004128")
    # the unpriced model is named and never counted as $0
    assert llama.list_cost_expected is None
    assert estimate.unpriced == ("local/my-llama",)
    assert estimate.total("expected") == Decimal("0.002455")  # 327 + 2,128
    assert estimate.total("max") == Decimal("0.004755")  # 627 + 4,128
    assert estimate.total_at("list") is None  # one model has no price


def test_time_is_the_slowest_provider_and_its_tightest_limit() -> None:
    estimate = build_estimate(_tally(), prices=BUILTIN_PRICES, paces=PACES)
    times = {t.provider: t for t in estimate.times}
    # openai: 10 jobs at 60 rpm = 10 s; (180 + 500) tokens at 600 tpm = 68 s: tpm sets it
    assert times["openai"].bound == "tpm"
    assert times["openai"].seconds == pytest.approx(68.0)
    # anthropic and local: no limits and no latency known: unbounded, so the run is too
    assert times["anthropic"].seconds is None
    assert estimate.seconds is None


def test_answers_so_far_set_the_expected_output_and_latency() -> None:
    answered: dict[tuple[str, str | None], Answered] = {
        ("openai", "gpt-4o-mini"): Answered(results=4, output_tokens=120, mean_latency_ms=500.0),
        ("anthropic", "claude-haiku-4-5"): Answered(results=2, output_tokens=1_000, mean_latency_ms=1000.0),
    }
    paces = {**PACES, "local": Pace(concurrency=1, latency_ms=250.0)}
    estimate = build_estimate(_tally(), prices=BUILTIN_PRICES, paces=paces, answered=answered)
    by_model = {m.model: m for m in estimate.models}
    # openai: a mean of 30 output tokens x 10 jobs = 300
    assert by_model["gpt-4o-mini"].expected_output_tokens == 300
    assert by_model["gpt-4o-mini"].output_from_answers
    # anthropic: a mean of 500 x 4 = 2,000, but never more than the caps (800)
    assert by_model["claude-haiku-4-5"].expected_output_tokens == 800
    times = {t.provider: t for t in estimate.times}
    # anthropic: 4 jobs x 1 s / 2 in flight = 2 s; local: 1 job x 0.25 s
    assert (times["anthropic"].seconds, times["anthropic"].bound) == (2.0, "concurrency")
    assert times["local"].seconds == 0.25
    # openai: 10 at 60 rpm = 10 s; (180 + 300) at 600 tpm = 48 s; 10 x 0.5 s / 4 = 1.25 s
    assert times["openai"].seconds == pytest.approx(48.0)
    assert estimate.seconds == pytest.approx(48.0)


def test_batch_mode_bills_batch_capable_providers_at_the_batch_price() -> None:
    tally = _tally()
    del tally.counts[("local", "my-llama")]
    tally.add(
        "fake", "fake-model", CHAT, _chat("x" * 40, max_tokens=100)
    )  # 18 in, 100 max, priced as 4o-mini
    paces = {**PACES, "fake": Pace(concurrency=1, latency_ms=0.0)}
    estimate = build_estimate(tally, prices=BUILTIN_PRICES, paces=paces, mode="batch")
    by_provider = {m.provider: m for m in estimate.models}
    assert by_provider["openai"].in_batch and by_provider["anthropic"].in_batch
    assert not by_provider["fake"].in_batch  # no batch API: real time, list price
    # 163.5 (openai batch) + 1,064 (claude batch: 2,128 / 2) + fake list 18 x 0.15 + 50 x 0.60 = 32.7
    assert estimate.total("expected") == Decimal("0.0012602")
    times = {t.provider: t for t in estimate.times}
    assert times["openai"].seconds == BATCH_WINDOW_S and times["openai"].bound == "batch window"
    assert times["fake"].seconds == 0.0
