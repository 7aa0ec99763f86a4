"""Server-side RPM/TPM limits with real rate-limit headers, and the books: duplicates, concurrency, reset."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import anthropic
import openai
import pytest
from anthropic.types import MessageParam
from helpers.fake_server_fixtures import StartFakeServer
from openai.types.chat import ChatCompletionMessageParam


def chat(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def msgs(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


async def test_rpm_is_enforced_per_window_with_openai_headers(fake_server: StartFakeServer) -> None:
    server = fake_server(rpm=120)  # the default 1 s window: at most 2 requests in any second
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as oai:
        first = await oai.chat.completions.with_raw_response.create(model="m", messages=chat("a"))
        assert first.headers["x-ratelimit-limit-requests"] == "120"
        assert first.headers["x-ratelimit-remaining-requests"] == "60"  # 1 of 2 left, in per-minute units
        second = await oai.chat.completions.with_raw_response.create(model="m", messages=chat("b"))
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.chat.completions.create(model="m", messages=chat("c"))
        headers = caught.value.response.headers
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["retry-after"] == "1" and 0 < int(headers["retry-after-ms"]) <= 1000
        assert headers["x-ratelimit-reset-requests"].endswith("ms")  # under a second
        assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
        await asyncio.sleep(int(headers["retry-after-ms"]) / 1000 + 0.02)
        assert (await oai.chat.completions.create(model="m", messages=chat("c"))).choices
    stats = server.stats()
    assert stats["limit_violations"] == 1 and stats["by_status"] == {"200": 3, "429": 1}
    assert stats["by_fault"] == {}  # a limiter refusal is not an injected fault
    assert stats["attempts"]["c"] == 2 and stats["answers"]["c"] == 1


async def test_tpm_counts_input_plus_max_tokens_with_anthropic_headers(fake_server: StartFakeServer) -> None:
    server = fake_server(tpm=6000, window_s=1.0)  # 100 tokens in any second
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0) as ant:
        raw = await ant.messages.with_raw_response.create(model="c", max_tokens=59, messages=msgs("four"))
        assert raw.headers["anthropic-ratelimit-tokens-limit"] == "6000"
        assert raw.headers["anthropic-ratelimit-tokens-remaining"] == str((100 - 60) * 60)
        reset = datetime.fromisoformat(raw.headers["anthropic-ratelimit-tokens-reset"])
        assert 0 <= (reset - datetime.now(UTC)).total_seconds() <= 2
        assert "anthropic-ratelimit-requests-limit" not in raw.headers  # no RPM configured
        with pytest.raises(anthropic.RateLimitError) as caught:
            await ant.messages.create(model="c", max_tokens=50, messages=msgs("more"))
        assert caught.value.type == "rate_limit_error" and "tokens per min" in str(caught.value.api_message)
        assert caught.value.response.headers["anthropic-ratelimit-tokens-remaining"] == str(40 * 60)
        assert float(caught.value.response.headers["retry-after"]) >= 1
        assert (await ant.messages.create(model="c", max_tokens=30, messages=msgs("fits"))).content
    assert server.stats()["limit_violations"] == 1


async def test_a_429_storm_refuses_all_but_the_window_cap(fake_server: StartFakeServer) -> None:
    server = fake_server(rpm=300, window_s=1.0)  # 5 per second
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as oai:
        results = await asyncio.gather(
            *(oai.chat.completions.create(model="m", messages=chat(f"p{i}")) for i in range(20)),
            return_exceptions=True,
        )
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 15
    for error in refused:
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert 0 < int(error.response.headers["retry-after-ms"]) <= 1000
    assert server.stats()["limit_violations"] == 15


async def test_books_count_duplicates_and_peak_concurrency(fake_server: StartFakeServer) -> None:
    server = fake_server(latency_ms=300)  # long enough for all five to be in flight together
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as oai:
        prompts = ["a", "a", "a", "b", "c"]
        await asyncio.gather(*(oai.chat.completions.create(model="m", messages=chat(p)) for p in prompts))
    stats = server.stats()
    assert stats["peak_concurrency"] == 5 and stats["in_flight"] == 0
    assert stats["answers"] == {"a": 3, "b": 1, "c": 1} and stats["duplicates"] == 2
    assert stats["requests"] == 5 and stats["prompts"] == 3 and stats["answers_total"] == 5
    assert stats["by_route"] == {"/v1/chat/completions": 5}
    assert stats["tokens"]["input"] == 5 and stats["tokens"]["output"] > 0
    assert "answers" not in server.stats(prompts=False)
    server.reset()
    after = server.stats()
    assert after["requests"] == 0 and after["answers"] == {} and after["peak_concurrency"] == 0


async def test_reset_also_empties_the_limiter_window(fake_server: StartFakeServer) -> None:
    server = fake_server(rpm=60)  # one request in any second
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as oai:
        await oai.chat.completions.create(model="m", messages=chat("x"))
        with pytest.raises(openai.RateLimitError):
            await oai.chat.completions.create(model="m", messages=chat("x"))
        server.reset()
        assert (await oai.chat.completions.create(model="m", messages=chat("x"))).choices
