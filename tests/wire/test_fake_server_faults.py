"""Every fault kind, seen through the real SDKs, and the deterministic schedules (directives, files)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, MessageParam
from helpers.fake_server_fixtures import StartFakeServer
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from batchrunner.fakeserver import FakeServerConfig, FaultKind, parse_plan
from batchrunner.fakeserver.testing import ThreadedFakeServer


@pytest.fixture
def server(fake_server: StartFakeServer) -> ThreadedFakeServer:
    return fake_server(retry_after_s=0.25)


@pytest.fixture
async def oai(server: ThreadedFakeServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
async def ant(server: ThreadedFakeServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0) as client:
        yield client


def chat(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def msgs(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


async def ask_openai(client: openai.AsyncOpenAI, prompt: str) -> ChatCompletion | str:
    return await client.chat.completions.create(model="gpt-test", messages=chat(prompt))


async def ask_anthropic(client: anthropic.AsyncAnthropic, prompt: str) -> Message:
    return await client.messages.create(model="claude-test", max_tokens=50, messages=msgs(prompt))


OPENAI_ERRORS: list[tuple[str, type[Exception], int]] = [
    ("400", openai.BadRequestError, 400),
    ("401", openai.AuthenticationError, 401),
    ("403", openai.PermissionDeniedError, 403),
    ("404", openai.NotFoundError, 404),
    ("408", openai.APIStatusError, 408),  # the openai SDK has no class of its own for 408
    ("409", openai.ConflictError, 409),
    ("422", openai.UnprocessableEntityError, 422),
    ("500", openai.InternalServerError, 500),
    ("502", openai.InternalServerError, 502),
    ("503", openai.InternalServerError, 503),
    ("504", openai.InternalServerError, 504),
    ("529", openai.InternalServerError, 529),
]


@pytest.mark.parametrize(("fault", "error", "status"), OPENAI_ERRORS)
async def test_openai_status_faults(
    oai: openai.AsyncOpenAI, fault: str, error: type[Exception], status: int
) -> None:
    with pytest.raises(error) as caught:
        await ask_openai(oai, f"[[fault:{fault}]]")
    assert isinstance(caught.value, openai.APIStatusError) and caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and set(caught.value.body) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


ANTHROPIC_ERRORS: list[tuple[str, type[Exception], str]] = [
    ("400", anthropic.BadRequestError, "invalid_request_error"),
    ("401", anthropic.AuthenticationError, "authentication_error"),
    ("403", anthropic.PermissionDeniedError, "permission_error"),
    ("404", anthropic.NotFoundError, "not_found_error"),
    ("408", anthropic.RequestTimeoutError, "timeout_error"),
    ("409", anthropic.ConflictError, "invalid_request_error"),
    ("422", anthropic.UnprocessableEntityError, "invalid_request_error"),
    ("429", anthropic.RateLimitError, "rate_limit_error"),
    ("500", anthropic.InternalServerError, "api_error"),
    ("502", anthropic.InternalServerError, "api_error"),
    ("503", anthropic.ServiceUnavailableError, "api_error"),
    ("504", anthropic.GatewayTimeoutError, "timeout_error"),
    ("529", anthropic.OverloadedError, "overloaded_error"),
]


@pytest.mark.parametrize(("fault", "error", "error_type"), ANTHROPIC_ERRORS)
async def test_anthropic_status_faults(
    ant: anthropic.AsyncAnthropic, fault: str, error: type[Exception], error_type: str
) -> None:
    with pytest.raises(error) as caught:
        await ask_anthropic(ant, f"[[fault:{fault}]]")
    assert isinstance(caught.value, anthropic.APIStatusError) and caught.value.type == error_type
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


async def test_429_carries_retry_after_in_seconds_and_milliseconds(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await ask_openai(oai, "[[fault:429]]")
    headers = caught.value.response.headers
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "250"  # configured 0.25 s
    assert caught.value.code == "rate_limit_exceeded"


async def test_429_date_carries_retry_after_as_an_http_date(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await ask_openai(oai, "[[fault:429-date]]")
    headers = caught.value.response.headers
    assert "retry-after-ms" not in headers
    when = email.utils.parsedate_to_datetime(headers["retry-after"])
    assert 0 <= (when - datetime.now(UTC)).total_seconds() <= 2


async def test_529_says_retry_and_is_anthropics_overloaded_error(ant: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.OverloadedError) as caught:
        await ask_anthropic(ant, "[[fault:529]]")
    assert caught.value.status_code == 529 and caught.value.response.headers["x-should-retry"] == "true"
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "Overloaded (injected by the batchrunner fake server)",
        },
        "request_id": caught.value.request_id,
    }


@pytest.mark.parametrize("fault", ["quota", "credit"])
async def test_billing_faults_in_each_providers_words(
    oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic, fault: str
) -> None:
    with pytest.raises(openai.RateLimitError) as quota:
        await ask_openai(oai, f"[[fault:{fault}]] openai")
    assert quota.value.code == "insufficient_quota" and quota.value.type == "insufficient_quota"
    assert "retry-after" not in quota.value.response.headers
    with pytest.raises(anthropic.BadRequestError) as credit:
        await ask_anthropic(ant, f"[[fault:{fault}]] anthropic")
    assert credit.value.type == "invalid_request_error"
    assert "Your credit balance is too low to access the Anthropic API" in str(credit.value.api_message)


@pytest.mark.parametrize("fault", ["reset", "truncate"])
async def test_broken_connections_are_connection_errors(oai: openai.AsyncOpenAI, fault: str) -> None:
    with pytest.raises(openai.APIConnectionError) as caught:
        await ask_openai(oai, f"[[fault:{fault}]]")
    assert not isinstance(caught.value, openai.APITimeoutError)


async def test_stream_truncated_mid_way(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="m", messages=chat("[[fault:truncate]]"), stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


async def test_hang_until_the_client_times_out(server: ThreadedFakeServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key="k", max_retries=0, timeout=0.3
    ) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await ask_openai(client, "[[fault:hang]]")
        assert time.monotonic() - started < 2
    stats = await wait_for_stats(server, lambda s: s["in_flight"] == 0)
    assert stats["disconnects"] == 1 and stats["by_fault"] == {"hang": 1} and stats["by_status"] == {}


async def test_a_hang_ends_at_max_hang_s(fake_server: StartFakeServer) -> None:
    server = fake_server(max_hang_s=0.1)
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key="k", max_retries=0, timeout=5
    ) as oai:
        with pytest.raises(openai.APIConnectionError):
            await ask_openai(oai, "[[fault:hang]]")


async def test_stopping_the_server_releases_hanging_requests(fake_server: StartFakeServer) -> None:
    server = fake_server()
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key="k", max_retries=0, timeout=30
    ) as oai:
        request = asyncio.create_task(ask_openai(oai, "[[fault:hang]]"))
        await wait_for_stats(server, lambda s: s["in_flight"] == 1)
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        assert time.monotonic() - started < 2.5
        with pytest.raises(openai.APIConnectionError):
            await request


async def test_200_with_invalid_json_or_html(oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(json.JSONDecodeError):
        await ask_openai(oai, "[[fault:bad-json]]")
    with pytest.raises(json.JSONDecodeError):
        await ask_anthropic(
            ant, "[[fault:bad-json]] anthropic"
        )  # a prompt of its own: attempts are per prompt
    page = await ask_openai(oai, "[[fault:html]]")
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")  # the SDK hands back the text
    stream = await oai.chat.completions.create(model="m", messages=chat("[[fault:bad-json]] s"), stream=True)
    with pytest.raises(json.JSONDecodeError):
        async for _ in stream:
            pass


async def test_200_without_usage(
    oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic, server: ThreadedFakeServer
) -> None:
    completion = await ask_openai(oai, "[[fault:no-usage]]")
    assert isinstance(completion, ChatCompletion) and completion.usage is None
    assert completion.choices[0].message.content
    message = await client_message(ant, "[[fault:no-usage]] anthropic")
    assert message.get("usage") is None and message["content"]
    assert server.stats()["answers_total"] == 2  # an answer without usage is still an answer (and billed)


async def client_message(client: anthropic.AsyncAnthropic, prompt: str) -> dict[str, Any]:
    raw = await client.messages.with_raw_response.create(model="c", max_tokens=50, messages=msgs(prompt))
    body: dict[str, Any] = json.loads(await raw.read())
    return body


async def test_schedule_by_attempt_number(oai: openai.AsyncOpenAI, server: ThreadedFakeServer) -> None:
    prompt = "flaky [[fault:500,500]]"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await ask_openai(oai, prompt)
    first = await ask_openai(oai, prompt)
    second = await ask_openai(oai, prompt)
    assert isinstance(first, ChatCompletion) and isinstance(second, ChatCompletion)
    assert first.choices[0].message.content == second.choices[0].message.content
    stats = server.stats()
    assert stats["attempts"] == {prompt: 4} and stats["answers"] == {prompt: 2} and stats["duplicates"] == 1
    assert stats["by_status"] == {"500": 2, "200": 2} and stats["by_fault"] == {"500": 2}
    server.reset()  # attempt counters start again: the schedule replays
    with pytest.raises(openai.InternalServerError):
        await ask_openai(oai, prompt)


async def test_always_failing_directive(ant: anthropic.AsyncAnthropic) -> None:
    for _ in range(3):
        with pytest.raises(anthropic.BadRequestError):
            await ask_anthropic(ant, "[[fault:*400]] hopeless")


async def test_bad_directive_is_a_400_that_says_why(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown fault 'teapot'"):
        await ask_openai(oai, "[[fault:teapot]]")


async def test_schedule_file_wins_for_its_prompts(fake_server: StartFakeServer) -> None:
    server = fake_server(schedule={"plain prompt": parse_plan(["429", "reset"])})
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as oai:
        with pytest.raises(openai.RateLimitError):
            await ask_openai(oai, "plain prompt")
        with pytest.raises(openai.APIConnectionError):
            await ask_openai(oai, "plain prompt")
        assert isinstance(await ask_openai(oai, "plain prompt"), ChatCompletion)
        assert isinstance(await ask_openai(oai, "another prompt"), ChatCompletion)


async def test_random_faults_repeat_with_the_same_seed(fake_server: StartFakeServer) -> None:
    config = FakeServerConfig(seed=42, fault_rates={FaultKind.SERVER_ERROR: 0.4, FaultKind.RATE_LIMIT: 0.2})

    async def outcomes(server: ThreadedFakeServer) -> list[str]:
        seen = []
        async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as oai:
            for i in range(15):
                for _ in range(2):  # two attempts each: the draw depends on the attempt number too
                    try:
                        await ask_openai(oai, f"prompt {i}")
                        seen.append("ok")
                    except openai.APIStatusError as exc:
                        seen.append(str(exc.status_code))
        return seen

    first = await outcomes(fake_server(config))
    assert first == await outcomes(fake_server(config))  # a restarted run meets the same faults
    assert {"ok", "500", "429"} <= set(first)


async def test_every_request_fails_at_probability_one(fake_server: StartFakeServer) -> None:
    server = fake_server(fault_rates={FaultKind.UNAVAILABLE: 1.0})
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0) as ant:
        for i in range(3):
            with pytest.raises(anthropic.ServiceUnavailableError):
                await ask_anthropic(ant, f"p{i}")
    assert server.stats()["by_fault"] == {"503": 3}


async def wait_for_stats(
    server: ThreadedFakeServer, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the books until ``ready`` holds, for up to 3 s (the server sees a client leave asynchronously)."""
    deadline = time.monotonic() + 3.0
    while True:
        stats = await asyncio.to_thread(server.stats)
        if ready(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.02)
