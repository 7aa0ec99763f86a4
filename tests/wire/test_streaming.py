"""Streamed requests end to end through both transports against the fake server (docs/streaming.md).

The fake server streams real SSE in both wire formats (OpenAI chat chunks, Anthropic message events);
each test runs over the SDKs (``sdk``) and over batchrunner's aiohttp transport (``http``). What the
server cannot send (an error event after the stream began) is served by a scripted server.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from helpers.fake_server_fixtures import StartFakeServer
from helpers.providers import make_provider

from batchrunner.errors import InvalidResponse, Overloaded, RateLimited, TransientError
from batchrunner.fakeserver.testing import ThreadedFakeServer
from batchrunner.models import Usage
from batchrunner.providers.base import Provider, ProviderRequest
from batchrunner.providers.registry import Transport
from batchrunner.providers.streaming import unpack_events

KEY = "sk-stream-test-5a4b3c2d1e0f"
PROMPT = "Tell me about streams and rivers in a few words please"


def make(api: str, base_url: str, transport: Transport) -> Provider:
    """The adapter for ``api`` over ``transport``, holding the test's key."""
    return make_provider(api, base_url, transport, KEY)


@pytest.fixture
def server(fake_server: StartFakeServer) -> ThreadedFakeServer:
    return fake_server(latency_ms=80, event_gap_ms=15, cut_after_events=3)


@pytest.fixture
async def oai(server: ThreadedFakeServer, transport: Transport) -> AsyncIterator[Provider]:
    provider = make("openai", server.openai_base_url, transport)
    yield provider
    await provider.aclose()


@pytest.fixture
async def ant(server: ThreadedFakeServer, transport: Transport) -> AsyncIterator[Provider]:
    provider = make("anthropic", server.base_url, transport)
    yield provider
    await provider.aclose()


def chat(prompt: str, **extra: Any) -> ProviderRequest:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": prompt}], **extra}
    return ProviderRequest(endpoint="/v1/chat/completions", body=body, timeout_s=10)


def message(prompt: str, **extra: Any) -> ProviderRequest:
    body = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": prompt}]}
    return ProviderRequest(endpoint="/v1/messages", body={**body, **extra}, timeout_s=10)


async def test_a_streamed_chat_completion_is_the_plain_answer(
    oai: Provider, server: ThreadedFakeServer
) -> None:
    plain = await oai.call(chat(PROMPT))
    streamed = await oai.call(chat(PROMPT, stream=True))
    assert server.stats()["streams"] == 1 and server.stats()["answers_total"] == 2
    assert streamed.output_text == plain.output_text and plain.output_text
    # include_usage was added to the request, so the usage came: the same as the plain answer's
    assert streamed.usage == plain.usage and streamed.usage.output_tokens > 0
    stored = json.loads(streamed.response_json)
    assert stored["object"] == "chat.completion"
    assert (
        stored["choices"][0]["finish_reason"]
        == json.loads(plain.response_json)["choices"][0]["finish_reason"]
    )
    assert stored["choices"][0]["message"]["content"] == plain.output_text
    assert streamed.request_id is not None and streamed.request_id == streamed.request_id.strip()
    assert plain.ttft_ms is None and plain.stream_events is None
    assert streamed.stream_events is not None
    events = unpack_events(streamed.stream_events)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"] == stored["usage"]
    # one chunk per word, a role chunk, a finish chunk, the usage chunk and [DONE]
    assert len(events) == len(plain.output_text.split()) + 4


async def test_time_to_first_token_is_before_the_last_event(oai: Provider, ant: Provider) -> None:
    for provider, request in ((oai, chat(PROMPT, stream=True)), (ant, message(PROMPT, stream=True))):
        started = time.perf_counter()
        streamed = await provider.call(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert streamed.ttft_ms is not None and streamed.stream_events is not None
        events = len(unpack_events(streamed.stream_events))
        # 80 ms before the first event, 15 ms between two; the first token is in the 2nd (OpenAI) or
        # 4th (Anthropic) event, so at least events - 4 gaps of 15 ms come after it.
        assert streamed.ttft_ms >= 80
        assert elapsed_ms - streamed.ttft_ms >= (events - 4) * 15 >= 60


async def test_a_line_that_sets_include_usage_false_gets_no_usage(oai: Provider) -> None:
    streamed = await oai.call(chat(PROMPT, stream=True, stream_options={"include_usage": False}))
    assert streamed.usage == Usage() and streamed.output_text
    assert "usage" not in json.loads(streamed.response_json)


async def test_a_streamed_message_is_the_plain_answer(ant: Provider, server: ThreadedFakeServer) -> None:
    plain = await ant.call(message(PROMPT))
    streamed = await ant.call(message(PROMPT, stream=True))
    assert server.stats()["streams"] == 1
    assert streamed.output_text == plain.output_text and plain.output_text
    assert streamed.usage == plain.usage and streamed.usage.output_tokens > 0
    stored, reference = json.loads(streamed.response_json), json.loads(plain.response_json)
    assert stored["content"] == reference["content"]
    assert stored["stop_reason"] == reference["stop_reason"] and stored["usage"] == reference["usage"]
    assert streamed.stream_events is not None
    kinds = [json.loads(event)["type"] for event in unpack_events(streamed.stream_events)]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "ping" in kinds


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_cut_stream_is_transient_and_possibly_billed(
    oai: Provider, ant: Provider, server: ThreadedFakeServer, api: str
) -> None:
    provider, request = (
        (oai, chat("[[fault:*truncate]] cut me", stream=True))
        if api == "openai"
        else (ant, message("[[fault:*truncate]] cut me", stream=True))
    )
    with pytest.raises(TransientError) as caught:
        await provider.call(request)
    assert caught.value.possibly_billed and not isinstance(caught.value, InvalidResponse)
    assert KEY not in str(caught.value)
    assert server.stats()["answers_total"] == 0  # never a complete answer


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_429_before_the_stream_starts(
    oai: Provider, ant: Provider, server: ThreadedFakeServer, api: str
) -> None:
    provider, request = (
        (oai, chat("[[fault:*429]] limited", stream=True))
        if api == "openai"
        else (ant, message("[[fault:*429]] limited", stream=True))
    )
    with pytest.raises(RateLimited) as caught:
        await provider.call(request)
    assert caught.value.retry_after == 1.0 and caught.value.status_code == 429
    assert server.stats()["streams"] == 0


# --- what the fake server does not send: an error event after the stream began ------------------------


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[list[bytes], int]]:
    events: list[bytes] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200, headers={"request-id": "req_s", "x-request-id": "req_s"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield events, runner.addresses[0][1]
    await runner.cleanup()


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def test_an_error_event_mid_stream_is_classified(
    scripted: tuple[list[bytes], int], transport: Transport
) -> None:
    events, port = scripted
    start = {"type": "message_start", "message": {"id": "m", "type": "message", "content": [], "usage": {}}}
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events += [sse(start, "message_start"), sse(overloaded, "error")]
    provider = make("anthropic", f"http://127.0.0.1:{port}", transport)
    try:
        with pytest.raises(Overloaded, match="error event overloaded_error: Overloaded") as caught:
            await provider.call(message("x", stream=True))
        assert caught.value.request_id == "req_s"
        events[:] = [sse({"id": "c", "choices": [], "error": {"message": "boom", "type": "server_error"}})]
    finally:
        await provider.aclose()
    provider = make("openai", f"http://127.0.0.1:{port}/v1", transport)
    try:
        with pytest.raises(TransientError, match="error event server_error: boom"):
            await provider.call(chat("x", stream=True))
        # A server that ends cleanly once every choice has finished, without [DONE], is complete.
        finish = {
            "id": "c",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        }
        events[:] = [sse(finish)]
        answer = await provider.call(chat("x", stream=True))
        assert answer.output_text == "hi"
        # ... but one that ends before the finish reason was cut.
        events[:] = [
            sse({"id": "c", "choices": [{"index": 0, "delta": {"content": "h"}, "finish_reason": None}]})
        ]
        with pytest.raises(TransientError, match="ended after 1 events, before its end") as cut:
            await provider.call(chat("x", stream=True))
        assert cut.value.possibly_billed
    finally:
        await provider.aclose()


# --- the SDKs' own stream helpers are the reference ------------------------------------------------------


async def test_the_answers_match_the_sdks_own_stream_helpers(
    oai: Provider, ant: Provider, server: ThreadedFakeServer
) -> None:
    import anthropic
    import openai
    from openai.lib.streaming.chat import ChatCompletionStreamState

    ours = await oai.call(chat(PROMPT, stream=True))
    client = openai.AsyncOpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    async with client:
        stream = await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            state.handle_chunk(chunk)
    reference = state.get_final_completion()
    stored = json.loads(ours.response_json)
    assert stored["choices"][0]["message"]["content"] == reference.choices[0].message.content
    assert stored["choices"][0]["finish_reason"] == reference.choices[0].finish_reason
    assert reference.usage is not None and stored["usage"] == reference.usage.to_dict()

    ours = await ant.call(message(PROMPT, stream=True))
    aclient = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.base_url, max_retries=0)
    async with (
        aclient,
        aclient.messages.stream(
            model="claude-test", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
        ) as astream,
    ):
        final = await astream.get_final_message()
    stored = json.loads(ours.response_json)
    expected = final.to_dict()
    assert stored["content"] == expected["content"]
    assert (stored["stop_reason"], stored["usage"]) == (expected["stop_reason"], expected["usage"])
