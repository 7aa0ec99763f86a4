"""The fake server's routes through the real SDKs: typed parsing, streaming, determinism, auth, ids."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import aiohttp
import anthropic
import openai
import pytest
from anthropic.types import Message, MessageParam
from helpers.fake_server_fixtures import StartFakeServer
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.responses import Response

from batchrunner.fakeserver.testing import ThreadedFakeServer

PROMPT = "Tell me about the fake server."


@pytest.fixture
def server(fake_server: StartFakeServer) -> ThreadedFakeServer:
    return fake_server()


@pytest.fixture
async def oai(server: ThreadedFakeServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def ant(server: ThreadedFakeServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key="sk-ant-test", max_retries=0
    ) as client:
        yield client


def chat(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def msgs(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


async def test_chat_completion_is_a_typed_deterministic_answer(oai: openai.AsyncOpenAI) -> None:
    raw = await oai.chat.completions.with_raw_response.create(model="gpt-test", messages=chat(PROMPT))
    completion = raw.parse()  # openai's raw response parses synchronously
    assert isinstance(completion, ChatCompletion)
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "gpt-test" and completion.created > 0
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content and choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == math.ceil(len(PROMPT) / 4)
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    again = await oai.chat.completions.create(model="gpt-test", messages=chat(PROMPT))
    assert again.choices[0].message.content == choice.message.content and again.usage == usage
    assert again.id != completion.id


async def test_max_tokens_caps_the_output(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(model="m", messages=chat(PROMPT), max_completion_tokens=2)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


async def test_chat_stream_matches_the_plain_answer_and_ends_with_usage(oai: openai.AsyncOpenAI) -> None:
    plain = await oai.chat.completions.create(model="m", messages=chat(PROMPT))
    stream = await oai.chat.completions.create(
        model="m",
        messages=chat(PROMPT),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert all(chunk.usage is None for chunk in chunks[:-1])
    bare = await oai.chat.completions.create(model="m", messages=chat(PROMPT), stream=True)
    assert [chunk.usage async for chunk in bare] == [None] * len(chunks[:-1])


async def test_embeddings(oai: openai.AsyncOpenAI) -> None:
    result = await oai.embeddings.create(model="text-embedding-test", input=["one", "two"])
    assert isinstance(result, CreateEmbeddingResponse)
    assert [item.index for item in result.data] == [0, 1] and all(len(i.embedding) == 8 for i in result.data)
    assert math.isclose(sum(v * v for v in result.data[0].embedding), 1.0, abs_tol=1e-4)
    assert result.usage.prompt_tokens == result.usage.total_tokens == 2
    again = await oai.embeddings.create(model="text-embedding-test", input="one", dimensions=3)
    assert len(again.data[0].embedding) == 3
    packed = await oai.embeddings.create(model="text-embedding-test", input="one", encoding_format="base64")
    assert isinstance(packed.data[0].embedding, str)  # the SDK leaves base64 as it came


async def test_responses_plain_and_streamed(oai: openai.AsyncOpenAI) -> None:
    response = await oai.responses.create(model="gpt-test", input=PROMPT, instructions="be brief")
    assert isinstance(response, Response) and response.id.startswith("resp_")
    assert response.status == "completed" and response.output_text
    assert response.usage is not None
    assert response.usage.input_tokens == math.ceil(len(PROMPT + "be brief") / 4)
    assert response.usage.output_tokens == len(response.output_text.split())
    async with oai.responses.stream(model="gpt-test", input=PROMPT, instructions="be brief") as stream:
        deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == response.output_text
    assert final.usage == response.usage


async def test_anthropic_message_plain_and_streamed(ant: anthropic.AsyncAnthropic) -> None:
    raw = await ant.messages.with_raw_response.create(
        model="claude-test", max_tokens=100, messages=msgs(PROMPT)
    )
    message = await raw.parse()
    assert isinstance(message, Message) and raw.headers["request-id"].startswith("req_")
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "claude-test" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.usage.input_tokens == math.ceil(len(PROMPT) / 4)
    assert message.usage.output_tokens == len(message.content[0].text.split())
    assert message.usage.cache_read_input_tokens == 0
    async with ant.messages.stream(model="claude-test", max_tokens=100, messages=msgs(PROMPT)) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == message.content[0].text == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == message.usage.output_tokens and final.stop_reason == "end_turn"
    short = await ant.messages.create(model="claude-test", max_tokens=1, messages=msgs(PROMPT))
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 1


async def test_long_prompts_report_cached_tokens(
    oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic
) -> None:
    prompt = "x" * 4 * 2000  # 2000 input tokens
    completion = await oai.chat.completions.create(model="m", messages=chat(prompt))
    assert completion.usage is not None and completion.usage.prompt_tokens == 2000
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 896
    message = await ant.messages.create(model="c", max_tokens=5, messages=msgs(prompt))
    assert message.usage.cache_read_input_tokens == 896 and message.usage.input_tokens == 2000 - 896


async def test_a_wrong_key_is_refused_in_each_providers_shape(fake_server: StartFakeServer) -> None:
    server = fake_server(api_key="the-right-key")
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="wrong-key", max_retries=0) as oai:
        with pytest.raises(openai.AuthenticationError) as caught:
            await oai.chat.completions.create(model="m", messages=chat(PROMPT))
    assert caught.value.code == "invalid_api_key" and caught.value.type == "invalid_request_error"
    assert "wrong-key" not in str(caught.value.body) and caught.value.request_id is not None
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="wrong-key", max_retries=0) as ant:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await ant.messages.create(model="c", max_tokens=5, messages=msgs(PROMPT))
        assert refused.value.type == "authentication_error"
    async with anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key="the-right-key", max_retries=0
    ) as ant:
        assert (await ant.messages.create(model="c", max_tokens=5, messages=msgs(PROMPT))).content
    assert server.stats()["by_status"] == {"401": 2, "200": 1}


async def test_raw_http_edges(server: ThreadedFakeServer) -> None:
    """What the SDKs never send: no key, a body that is not JSON, a missing field, an unknown route."""
    url = f"{server.openai_base_url}/chat/completions"
    body = {"model": "m", "messages": chat(PROMPT)}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body) as response:
            assert (
                response.status == 401
                and "didn't provide an API key" in (await response.json())["error"]["message"]
            )
        headers = {"Authorization": "Bearer k"}
        async with session.post(url, data=b"{nope", headers=headers) as response:
            assert (
                response.status == 400 and (await response.json())["error"]["type"] == "invalid_request_error"
            )
        async with session.post(url, json={"messages": chat(PROMPT)}, headers=headers) as response:
            assert response.status == 400 and (await response.json())["error"]["param"] == "model"
        async with session.post(
            f"{server.base_url}/v1/messages", json=body, headers={"x-api-key": "k"}
        ) as response:
            error = await response.json()
            assert (
                response.status == 400
                and error["type"] == "error"
                and "max_tokens" in error["error"]["message"]
            )
        async with session.get(f"{server.openai_base_url}/models/nope", headers=headers) as response:
            assert response.status == 404 and "Invalid URL" in (await response.json())["error"]["message"]
