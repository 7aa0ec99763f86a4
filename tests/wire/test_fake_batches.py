"""The fake server's batch APIs through the real SDKs: OpenAI Files + Batches, Anthropic Message Batches.

Each line must be answered as the realtime route answers the same body, the states and counts must be
the real APIs' words, and the books must tell batch traffic from realtime traffic.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message
from anthropic.types.messages import MessageBatch
from helpers.fake_server_fixtures import StartFakeServer
from openai.types import Batch
from openai.types.chat import ChatCompletion

from batchrunner.fakeserver.faults import parse_plan
from batchrunner.fakeserver.testing import ThreadedFakeServer

FAST = 0.3
"""batch_seconds for the tests: long enough to see a batch in progress, short enough to wait for."""


@pytest.fixture
def server(fake_server: StartFakeServer) -> ThreadedFakeServer:
    return fake_server(batch_seconds=FAST)


def openai_client(server: ThreadedFakeServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)


def anthropic_client(server: ThreadedFakeServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
async def oai(server: ThreadedFakeServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(server) as client:
        yield client


@pytest.fixture
async def ant(server: ThreadedFakeServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_client(server) as client:
        yield client


def chat_body(prompt: str, model: str = "gpt-test") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 50}


def message_params(prompt: str) -> Any:
    return {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": prompt}]}


def input_file(bodies: dict[str, dict[str, Any]], url: str = "/v1/chat/completions") -> bytes:
    lines = [{"custom_id": cid, "method": "POST", "url": url, "body": body} for cid, body in bodies.items()]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def submit(client: openai.AsyncOpenAI, data: bytes, **extra: Any) -> Batch:
    uploaded = await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    return await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", **extra
    )


async def until(check: Callable[[], Any]) -> Any:
    """Poll the coroutine function ``check`` until it returns something truthy (10 s at most)."""
    deadline = time.monotonic() + 10.0
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            assert value, "timed out"
            return value
        await asyncio.sleep(0.02)


async def ended_openai(client: openai.AsyncOpenAI, batch_id: str) -> Batch:
    async def check() -> Batch | None:
        batch = await client.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None

    result: Batch = await until(check)
    return result


async def ended_anthropic(client: anthropic.AsyncAnthropic, batch_id: str) -> MessageBatch:
    async def check() -> MessageBatch | None:
        batch = await client.messages.batches.retrieve(batch_id)
        return batch if batch.processing_status == "ended" else None

    result: MessageBatch = await until(check)
    return result


async def file_lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.read().splitlines()]


# --- OpenAI ---------------------------------------------------------------------------------------


async def test_openai_batch_answers_each_line_as_realtime_would(
    oai: openai.AsyncOpenAI, server: ThreadedFakeServer
) -> None:
    bodies = {f"job-{i}": chat_body(f"batch prompt {i}") for i in range(3)}
    batch = await submit(oai, input_file(bodies), metadata={"batchrunner_batch": "local-1"})
    assert batch.status == "validating" and batch.id.startswith("batch_")
    assert batch.metadata == {"batchrunner_batch": "local-1"} and batch.completion_window == "24h"
    assert batch.request_counts is not None and batch.request_counts.total == 0
    done = await ended_openai(oai, batch.id)
    assert done.status == "completed" and done.error_file_id is None
    assert done.request_counts is not None and done.request_counts.model_dump() == {
        "total": 3,
        "completed": 3,
        "failed": 0,
    }
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.model == "gpt-test"
    lines = await file_lines(oai, done.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(bodies)
    assert len({line["response"]["request_id"] for line in lines}) == 3
    assert server.stats()["requests"] == 0  # no realtime traffic yet
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        answer = ChatCompletion.model_validate(line["response"]["body"])
        realtime = await oai.chat.completions.create(**bodies[line["custom_id"]])
        assert answer.choices[0].message.content == realtime.choices[0].message.content
        assert answer.usage == realtime.usage
    stats = server.stats()
    assert stats["batch_files"] == 1 and stats["batches"] == {"openai": 1} and stats["batch_lines"] == 3
    assert stats["batch_answers"] == 3 and stats["batch_line_duplicates"] == 0
    assert stats["requests"] == 3 and stats["answers_total"] == 3  # the realtime books saw only realtime


async def test_a_faulted_line_fails_with_the_realtime_error_body(oai: openai.AsyncOpenAI) -> None:
    bodies = {"good": chat_body("fine prompt"), "bad": chat_body("broken [[fault:400]]")}
    done = await ended_openai(oai, (await submit(oai, input_file(bodies))).id)
    assert done.status == "completed"
    assert done.request_counts is not None and (
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (1, 1)
    [error] = await file_lines(oai, done.error_file_id)
    assert error["custom_id"] == "bad" and error["error"] is None
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as realtime:
        await oai.chat.completions.create(**bodies["bad"])
    assert realtime.value.body == error["response"]["body"]["error"]


async def test_a_batch_expires_with_part_of_its_lines_done(fake_server: StartFakeServer) -> None:
    server = fake_server(batch_seconds=FAST, batch_expire_fraction=0.5)
    async with openai_client(server) as client:
        bodies = {f"e{i}": chat_body(f"expiring {i}") for i in range(4)}
        done = await ended_openai(client, (await submit(client, input_file(bodies))).id)
        assert done.status == "expired" and done.expired_at is not None
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed) == (4, 2)
        answered = await file_lines(client, done.output_file_id)
        expired = await file_lines(client, done.error_file_id)
    assert [line["custom_id"] for line in answered] == ["e0", "e1"]
    assert [line["custom_id"] for line in expired] == ["e2", "e3"]
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in expired)
    assert server.stats()["batch_answers"] == 2


@pytest.mark.parametrize(
    ("second", "code"),
    [
        (chat_body("other model", model="gpt-other"), "mismatched_model"),
        (chat_body("please [[batch:invalid]]"), "invalid_request"),
    ],
)
async def test_a_batch_that_fails_validation(
    oai: openai.AsyncOpenAI, server: ThreadedFakeServer, second: dict[str, Any], code: str
) -> None:
    data = input_file({"a": chat_body("first line"), "b": second})
    done = await ended_openai(oai, (await submit(oai, data)).id)
    assert done.status == "failed" and done.failed_at is not None and done.output_file_id is None
    assert done.errors is not None and done.errors.data is not None
    [error] = done.errors.data
    assert (error.code, error.line) == (code, 2) and error.message
    stats = server.stats()
    assert stats["batches_failed"] == 1 and stats["batch_lines"] == 0 and stats["batch_answers"] == 0


async def test_a_url_that_is_not_the_endpoint_and_a_repeated_custom_id_fail_validation(
    oai: openai.AsyncOpenAI,
) -> None:
    data = (
        input_file({"a": chat_body("one")})
        + input_file({"b": chat_body("two")}, url="/v1/embeddings")
        + input_file({"a": chat_body("three")})
    )
    done = await ended_openai(oai, (await submit(oai, data)).id)
    assert done.errors is not None and done.errors.data is not None
    assert [(e.code, e.line) for e in done.errors.data] == [("invalid_url", 2), ("duplicate_custom_id", 3)]


async def test_an_upload_with_a_malformed_line_is_refused(oai: openai.AsyncOpenAI) -> None:
    data = (
        input_file({"a": chat_body("x")})
        + b'{"custom_id": "b", "method": "GET", "url": "/v1/chat/completions"}\n'
    )
    with pytest.raises(openai.BadRequestError, match="Line 2"):
        await oai.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")


async def test_cancel_keeps_the_answers_done_and_cancels_the_rest(fake_server: StartFakeServer) -> None:
    server = fake_server(batch_seconds=1.0)
    async with openai_client(server) as client:
        bodies = {f"c{i}": chat_body(f"cancel me {i}") for i in range(10)}
        batch = await submit(client, input_file(bodies))
        await asyncio.sleep(0.4)
        cancelling = await client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        done = await ended_openai(client, batch.id)
        assert done.status == "cancelled" and done.cancelled_at is not None
        answered = await file_lines(client, done.output_file_id)
        cancelled = await file_lines(client, done.error_file_id)
        with pytest.raises(openai.ConflictError):
            await client.batches.cancel(batch.id)
    assert 0 < len(answered) < 10 and len(answered) + len(cancelled) == 10
    assert done.request_counts is not None and done.request_counts.completed == len(answered)
    assert {line["error"]["code"] for line in cancelled} == {"batch_cancelled"}
    assert sorted(line["custom_id"] for line in answered + cancelled) == sorted(bodies)


async def test_lists_are_newest_first_and_page_as_the_sdk_pages_them(oai: openai.AsyncOpenAI) -> None:
    batches = [await submit(oai, input_file({"x": chat_body(f"list {i}")})) for i in range(3)]
    made = [batch.id for batch in batches]
    listed = [batch.id async for batch in oai.batches.list(limit=2)]
    assert listed == made[::-1]
    first = await oai.batches.list(limit=2)
    assert [b.id for b in first.data] == made[:0:-1] and first.has_more
    files = [f async for f in oai.files.list(purpose="batch", limit=2)]
    assert [f.id for f in files] == [batch.input_file_id for batch in batches][::-1]
    assert all(f.purpose == "batch" and f.status == "processed" for f in files)
    got = await oai.files.retrieve(files[0].id)
    assert got.filename == "in.jsonl" and got.bytes > 0


async def test_batch_api_faults_answer_the_batch_requests_themselves(fake_server: StartFakeServer) -> None:
    server = fake_server(batch_seconds=FAST, batch_api_faults=parse_plan("429"), retry_after_s=2)
    async with openai_client(server) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.batches.list()
        assert limited.value.response.headers["retry-after"] == "2"
        assert [b async for b in client.batches.list()] == []
    stats = server.stats()
    assert stats["batch_requests"] == 2 and stats["batch_by_status"] == {"429": 1, "200": 1}
    assert stats["requests"] == 0 and stats["by_fault"] == {}


async def test_a_wrong_key_is_refused_in_the_providers_shape(fake_server: StartFakeServer) -> None:
    server = fake_server(api_key="sk-right-key")
    async with openai_client(server) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.batches.list()
    async with anthropic_client(server) as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.batches.list()


# --- Anthropic ------------------------------------------------------------------------------------


async def test_anthropic_batch_answers_each_line_as_realtime_would(
    ant: anthropic.AsyncAnthropic, server: ThreadedFakeServer
) -> None:
    requests: list[Any] = [
        {"custom_id": f"m-{i}", "params": message_params(f"anthropic batch {i}")} for i in range(3)
    ]
    requests.append({"custom_id": "m-bad", "params": message_params("overloaded [[fault:529]]")})
    batch = await ant.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 4 and batch.request_counts.succeeded == 0
    done = await ended_anthropic(ant, batch.id)
    assert done.ended_at is not None and done.results_url is not None
    assert done.request_counts.model_dump() == {
        "processing": 0,
        "succeeded": 3,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    results = {r.custom_id: r.result async for r in await ant.messages.batches.results(batch.id)}
    bad = results.pop("m-bad")
    assert bad.type == "errored" and bad.error.error.type == "overloaded_error"
    for custom_id, result in results.items():
        assert result.type == "succeeded" and isinstance(result.message, Message)
        params = next(r["params"] for r in requests if r["custom_id"] == custom_id)
        realtime = await ant.messages.create(**params)
        assert result.message.content == realtime.content and result.message.usage == realtime.usage
    stats = server.stats()
    assert stats["batches"] == {"anthropic": 1} and stats["batch_lines"] == 4
    assert stats["batch_answers"] == 3 and stats["batch_errors"] == 1 and stats["batch_files"] == 0


async def test_anthropic_expiry_and_cancel(fake_server: StartFakeServer) -> None:
    server = fake_server(batch_seconds=1.0, batch_expire_fraction=0.5)
    async with anthropic_client(server) as client:
        requests: list[Any] = [{"custom_id": f"x{i}", "params": message_params(f"exp {i}")} for i in range(4)]
        expiring = await client.messages.batches.create(requests=requests)
        cancelled = await client.messages.batches.create(
            requests=[{"custom_id": f"y{i}", "params": message_params(f"can {i}")} for i in range(10)]
        )
        await asyncio.sleep(0.2)
        canceling = await client.messages.batches.cancel(cancelled.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        expired = await ended_anthropic(client, expiring.id)
        ended = await ended_anthropic(client, cancelled.id)
        kinds = [r.result.type async for r in await client.messages.batches.results(expiring.id)]
        cancel_kinds = [r.result.type async for r in await client.messages.batches.results(cancelled.id)]
        with pytest.raises(anthropic.ConflictError):
            await client.messages.batches.cancel(cancelled.id)
    assert (expired.request_counts.succeeded, expired.request_counts.expired) == (2, 2)
    assert kinds == ["succeeded", "succeeded", "expired", "expired"]
    counts = ended.request_counts
    assert counts.canceled > 0 and counts.succeeded + counts.canceled == 10
    assert cancel_kinds.count("canceled") == counts.canceled


async def test_anthropic_list_pages_both_ways(ant: anthropic.AsyncAnthropic) -> None:
    made = [
        (
            await ant.messages.batches.create(
                requests=[{"custom_id": "a", "params": message_params(f"l{i}")}]
            )
        ).id
        for i in range(3)
    ]
    assert [b.id async for b in ant.messages.batches.list(limit=2)] == made[::-1]
    page = await ant.messages.batches.list(limit=1, before_id=made[0])
    assert [b.id for b in page.data] == [made[1]] and page.has_more


@pytest.mark.parametrize(
    "requests",
    [
        [{"custom_id": "has space", "params": message_params("x")}],
        [
            {"custom_id": "a", "params": message_params("x")},
            {"custom_id": "a", "params": message_params("y")},
        ],
        [{"custom_id": "a", "params": message_params("break it [[batch:invalid]]")}],
    ],
)
async def test_anthropic_refuses_an_invalid_batch(
    ant: anthropic.AsyncAnthropic, server: ThreadedFakeServer, requests: list[Any]
) -> None:
    with pytest.raises(anthropic.BadRequestError):
        await ant.messages.batches.create(requests=requests)
    assert server.stats()["batches"] == {}


async def test_results_before_the_end_are_refused(fake_server: StartFakeServer) -> None:
    server = fake_server(batch_seconds=30)
    async with anthropic_client(server) as client:
        batch = await client.messages.batches.create(
            requests=[{"custom_id": "a", "params": message_params("slow")}]
        )
        with pytest.raises(anthropic.BadRequestError):
            await client.get(f"/v1/messages/batches/{batch.id}/results", cast_to=object)


async def test_reset_clears_the_batch_books(oai: openai.AsyncOpenAI, server: ThreadedFakeServer) -> None:
    await ended_openai(oai, (await submit(oai, input_file({"r": chat_body("reset me")}))).id)
    await submit(oai, input_file({"r": chat_body("reset me")}))
    assert server.stats()["batch_line_duplicates"] == 1
    server.reset()
    stats = server.stats()
    assert stats["batch_lines"] == 0 and stats["batch_files"] == 0 and stats["batch_placements"] == {}
