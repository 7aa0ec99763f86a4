"""batchrunner's own batch clients (providers/openai_batch.py, anthropic_batch.py) against the fake server.

A line's outcome must be what the realtime adapter makes of the same answer: the same text and usage, the
same error class. Every client holds a canary key, and no error may show it.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers.fake_server_fixtures import StartFakeServer
from helpers.providers import make_provider

from batchrunner.errors import (
    Overloaded,
    PermanentError,
    ProviderError,
    RateLimited,
    RunStoppingError,
    TransientError,
)
from batchrunner.fakeserver.faults import parse_plan
from batchrunner.fakeserver.testing import ThreadedFakeServer
from batchrunner.providers.base import ProviderRequest
from batchrunner.providers.batchapi import BatchApi, LineKind, LineOutcome, RemoteBatch, open_batch_api
from batchrunner.providers.registry import ProviderSettings
from batchrunner.secret import Secret

KEY = "sk-canary-batch-0123456789abcdef"
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def settings(api: str, base_url: str, key: str = KEY) -> ProviderSettings:
    return ProviderSettings(
        name=api, kind="openai" if api == "openai" else "anthropic", api_key=Secret(key), base_url=base_url
    )


def base_url(server: ThreadedFakeServer, api: str) -> str:
    return server.openai_base_url if api == "openai" else server.base_url


@pytest.fixture
def server(fake_server: StartFakeServer) -> ThreadedFakeServer:
    return fake_server(batch_seconds=0.3)


@pytest.fixture(params=["openai", "anthropic"])
def api_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def client(server: ThreadedFakeServer, api_name: str) -> AsyncIterator[BatchApi]:
    opened = open_batch_api(settings(api_name, base_url(server, api_name)))
    assert opened is not None
    yield opened
    await opened.aclose()


def body(api: str, prompt: str) -> dict[str, Any]:
    return {
        "model": "gpt-test" if api == "openai" else "claude-test",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": prompt}],
    }


def endpoint(api: str) -> str:
    return CHAT if api == "openai" else MESSAGES


def write_lines(client: BatchApi, api: str, path: Path, prompts: dict[str, str]) -> Path:
    path.write_bytes(
        b"".join(client.line(cid, endpoint(api), json.dumps(body(api, p))) for cid, p in prompts.items())
    )
    return path


async def submit(client: BatchApi, api: str, path: Path, local_id: str) -> RemoteBatch:
    file_id = await client.upload(local_id, path)
    assert (file_id is None) == (api == "anthropic")
    return await client.create(local_id, endpoint(api), path, file_id)


async def until_ended(client: BatchApi, batch_id: str) -> RemoteBatch:
    deadline = time.monotonic() + 10
    while True:
        batch = await client.get(batch_id)
        if batch.ended:
            return batch
        assert time.monotonic() < deadline, "the batch did not end"
        await asyncio.sleep(0.02)


async def outcomes(client: BatchApi, batch: RemoteBatch) -> dict[str, LineOutcome]:
    return {outcome.custom_id: outcome async for outcome in client.results(batch)}


def no_key(error: BaseException) -> None:
    assert KEY not in str(error) and KEY not in (getattr(error, "error_body", None) or "")


# --- lines ----------------------------------------------------------------------------------------


def test_each_provider_writes_its_own_line_format(server: ThreadedFakeServer) -> None:
    openai_api = open_batch_api(settings("openai", server.openai_base_url))
    anthropic_api = open_batch_api(settings("anthropic", server.base_url))
    assert openai_api is not None and anthropic_api is not None
    raw = json.dumps(
        {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    )
    line = openai_api.line("job-1", CHAT, raw)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "custom_id": "job-1",
        "method": "POST",
        "url": CHAT,
        "body": {"model": "m", "messages": []},
    }
    line = anthropic_api.line("job_2", MESSAGES, '{"model": "c", "stream": true}')
    assert json.loads(line) == {"custom_id": "job_2", "params": {"model": "c"}}
    assert json.loads(anthropic_api.line("a", MESSAGES, '{"model":"c","max_tokens":5}')) == {
        "custom_id": "a",
        "params": {"model": "c", "max_tokens": 5},
    }
    with pytest.raises(ValueError, match="custom_id"):
        anthropic_api.line("not ok!", MESSAGES, "{}")
    with pytest.raises(ValueError, match="endpoint"):
        anthropic_api.line("a", CHAT, "{}")
    with pytest.raises(ValueError, match="endpoint"):
        openai_api.line("a", MESSAGES, "{}")
    assert openai_api.limits.max_requests == 50_000 and anthropic_api.limits.max_requests == 100_000
    assert open_batch_api(ProviderSettings(name="fake", kind="fake")) is None


# --- a whole batch --------------------------------------------------------------------------------


async def test_a_batch_is_answered_as_realtime_would_answer(
    client: BatchApi, api_name: str, server: ThreadedFakeServer, tmp_path: Path
) -> None:
    prompts = {
        "ok-1": "a batch prompt",
        "ok-2": "another batch prompt",
        "bad": "refused [[fault:400]]",
        "busy": "overloaded [[fault:529]]",
        "down": "broken [[fault:500]]",
    }
    path = write_lines(client, api_name, tmp_path / "in.jsonl", prompts)
    created = await submit(client, api_name, path, "local-7")
    assert not created.ended and created.created_at.tzinfo is not None
    assert created.local_id == ("local-7" if api_name == "openai" else None)
    done = await until_ended(client, created.id)
    assert (done.total, done.succeeded, done.errored, done.expired, done.canceled) == (5, 2, 3, 0, 0)
    assert done.processing == 0 and done.failure is None
    lines = await outcomes(client, done)
    assert set(lines) == set(prompts)
    realtime = make_provider(api_name, base_url(server, api_name), "http", KEY)
    try:
        for custom_id, prompt in prompts.items():
            outcome = lines[custom_id]
            assert json.loads(outcome.raw_line)["custom_id"] == custom_id
            request = ProviderRequest(endpoint=endpoint(api_name), body=body(api_name, prompt), timeout_s=10)
            if custom_id.startswith("ok"):
                assert (
                    outcome.kind is LineKind.SUCCEEDED
                    and outcome.response is not None
                    and outcome.error is None
                )
                answer = await realtime.call(request)
                assert (
                    outcome.response.output_text == answer.output_text
                    and outcome.response.usage == answer.usage
                )
                assert outcome.response.model == answer.model
                if api_name == "openai":
                    assert outcome.response.request_id and outcome.response.request_id.startswith("req_")
                continue
            assert outcome.kind is LineKind.ERRORED and outcome.error is not None and outcome.response is None
            with pytest.raises(ProviderError) as same:
                await realtime.call(request)
            assert type(outcome.error) is type(same.value)
            assert outcome.error.error_type == same.value.error_type
            no_key(outcome.error)
    finally:
        await realtime.aclose()
    assert isinstance(lines["bad"].error, PermanentError)
    assert isinstance(lines["busy"].error, Overloaded) and isinstance(lines["down"].error, TransientError)


async def test_an_expired_batch_gives_back_its_unfinished_lines(
    fake_server: StartFakeServer, api_name: str, tmp_path: Path
) -> None:
    server = fake_server(batch_seconds=0.3, batch_expire_fraction=0.5)
    client = open_batch_api(settings(api_name, base_url(server, api_name)))
    assert client is not None
    try:
        path = write_lines(
            client, api_name, tmp_path / "in.jsonl", {f"e{i}": f"expiring {i}" for i in range(4)}
        )
        done = await until_ended(client, (await submit(client, api_name, path, "exp")).id)
        kinds = {cid: outcome.kind for cid, outcome in (await outcomes(client, done)).items()}
    finally:
        await client.aclose()
    assert done.status == "expired" if api_name == "openai" else done.status == "ended"
    assert (done.succeeded, done.expired, done.canceled) == (2, 2, 0)
    assert kinds == {
        "e0": LineKind.SUCCEEDED,
        "e1": LineKind.SUCCEEDED,
        "e2": LineKind.EXPIRED,
        "e3": LineKind.EXPIRED,
    }


async def test_cancel_keeps_what_was_done(
    fake_server: StartFakeServer, api_name: str, tmp_path: Path
) -> None:
    server = fake_server(batch_seconds=1.0)
    client = open_batch_api(settings(api_name, base_url(server, api_name)))
    assert client is not None
    try:
        path = write_lines(
            client, api_name, tmp_path / "in.jsonl", {f"c{i}": f"cancel {i}" for i in range(10)}
        )
        created = await submit(client, api_name, path, "can")
        await asyncio.sleep(0.3)
        cancelling = await client.cancel(created.id)
        assert not cancelling.ended and cancelling.status in ("cancelling", "canceling")
        done = await until_ended(client, created.id)
        again = await client.cancel(created.id)  # the provider refuses (409): the ended batch comes back
        kinds = [outcome.kind for outcome in (await outcomes(client, done)).values()]
    finally:
        await client.aclose()
    assert again.ended and again.id == done.id
    assert 0 < done.canceled < 10 and done.succeeded + done.canceled == 10
    assert (
        kinds.count(LineKind.CANCELED) == done.canceled and kinds.count(LineKind.SUCCEEDED) == done.succeeded
    )


async def test_results_of_a_batch_still_running_are_refused(
    fake_server: StartFakeServer, api_name: str, tmp_path: Path
) -> None:
    server = fake_server(batch_seconds=30)
    client = open_batch_api(settings(api_name, base_url(server, api_name)))
    assert client is not None
    try:
        path = write_lines(client, api_name, tmp_path / "in.jsonl", {"slow": "a slow one"})
        created = await submit(client, api_name, path, "slow")
        with pytest.raises(ValueError, match="has not ended"):
            await outcomes(client, created)
    finally:
        await client.aclose()


async def test_openai_validation_failure_is_the_batch_failure(
    server: ThreadedFakeServer, tmp_path: Path
) -> None:
    client = open_batch_api(settings("openai", server.openai_base_url))
    assert client is not None
    try:
        path = tmp_path / "in.jsonl"
        path.write_bytes(
            client.line("a", CHAT, json.dumps(body("openai", "one")))
            + client.line("b", CHAT, json.dumps(body("openai", "two [[batch:invalid]]")))
        )
        done = await until_ended(client, (await submit(client, "openai", path, "val")).id)
    finally:
        await client.aclose()
    assert done.status == "failed" and done.failure is not None
    assert "line 2: invalid_request" in done.failure and done.total == 0


# --- recovery -------------------------------------------------------------------------------------


async def test_find_recovers_a_lost_create(client: BatchApi, api_name: str, tmp_path: Path) -> None:
    before = datetime.now(UTC)
    three = write_lines(
        client, api_name, tmp_path / "three.jsonl", {f"r{i}": f"recover {i}" for i in range(3)}
    )
    two = write_lines(client, api_name, tmp_path / "two.jsonl", {f"s{i}": f"other {i}" for i in range(2)})
    lost = await submit(client, api_name, three, "lost-1")  # the id is "lost": only find() may tell it
    other = await submit(client, api_name, two, "other-2")
    found = await client.find("lost-1", before, 3)
    assert [batch.id for batch in found] == [lost.id]
    assert found[0].input_file_id == (lost.input_file_id if api_name == "openai" else None)
    assert [b.id for b in await client.find("other-2", before, 2)] == [other.id]
    assert await client.find("lost-1", datetime.now(UTC) + timedelta(minutes=10), 3) == []


async def test_find_upload_finds_a_file_by_the_local_id(server: ThreadedFakeServer, tmp_path: Path) -> None:
    client = open_batch_api(settings("openai", server.openai_base_url))
    assert client is not None
    try:
        path = write_lines(client, "openai", tmp_path / "in.jsonl", {"u": "uploaded"})
        file_id = await client.upload("up-1", path)
        assert file_id is not None and file_id.startswith("file-")
        assert await client.find_upload("up-1") == file_id
        assert await client.find_upload("up-2") is None
    finally:
        await client.aclose()
    anthropic_api = open_batch_api(settings("anthropic", server.base_url))
    assert anthropic_api is not None
    assert (
        await anthropic_api.find_upload("up-1") is None and await anthropic_api.upload("up-1", path) is None
    )
    await anthropic_api.aclose()


# --- the batch endpoints' own errors ----------------------------------------------------------------


async def test_a_429_on_a_batch_endpoint_is_rate_limited_with_retry_after(
    fake_server: StartFakeServer, api_name: str
) -> None:
    server = fake_server(batch_api_faults=parse_plan("429,500"), retry_after_s=3)
    client = open_batch_api(settings(api_name, base_url(server, api_name)))
    assert client is not None
    try:
        with pytest.raises(RateLimited) as limited:
            await client.get("batch_nothing")
        assert limited.value.retry_after == 3 and limited.value.status_code == 429
        with pytest.raises(TransientError) as failed:
            await client.find("x", datetime.now(UTC), 1)
        with pytest.raises(PermanentError) as missing:
            await client.get("batch_nothing")  # 404: no such batch
    finally:
        await client.aclose()
    for error in (limited.value, failed.value, missing.value):
        no_key(error)
        assert str(error).startswith(f"{api_name}: ")


async def test_a_wrong_key_stops_the_run_and_is_never_shown(
    fake_server: StartFakeServer, api_name: str, tmp_path: Path
) -> None:
    server = fake_server(api_key="sk-the-right-key-000000")
    client = open_batch_api(settings(api_name, base_url(server, api_name)))
    assert client is not None
    try:
        with pytest.raises(RunStoppingError) as refused:
            await client.get("anything")
        path = write_lines(client, api_name, tmp_path / "in.jsonl", {"k": "key"})
        with pytest.raises(RunStoppingError) as refused_create:
            await submit(client, api_name, path, "key")
    finally:
        await client.aclose()
    for error in (refused.value, refused_create.value):
        no_key(error)
        assert error.__cause__ is None or KEY not in str(error.__cause__)


async def test_a_lost_connection_is_transient(api_name: str, tmp_path: Path) -> None:
    client = open_batch_api(settings(api_name, "http://127.0.0.1:9"))  # nothing listens on the discard port
    assert client is not None
    try:
        with pytest.raises(TransientError) as lost:
            await client.get("anything")
    finally:
        await client.aclose()
    no_key(lost.value)


# --- streaming the Anthropic body ---------------------------------------------------------------


async def test_a_10000_line_anthropic_body_is_streamed_from_the_file(tmp_path: Path) -> None:
    """The body is posted as it is read from disk: the client's memory peak stays far below its size."""
    received = tmp_path / "received.json"

    async def create(request: web.Request) -> web.Response:
        with received.open("wb") as sink:
            async for chunk in request.content.iter_chunked(1 << 16):
                sink.write(chunk)
        now = datetime.now(UTC).isoformat()
        counts = {"processing": 10_000, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        return web.json_response(
            {"id": "msgbatch_streamed", "type": "message_batch", "processing_status": "in_progress",
             "request_counts": counts, "created_at": now, "expires_at": now}
        )  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/messages/batches", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = open_batch_api(settings("anthropic", f"http://127.0.0.1:{port}"))
    assert client is not None
    path = tmp_path / "big.jsonl"
    filler = "x" * 2000
    with path.open("wb") as out:
        for i in range(10_000):
            out.write(client.line(f"job-{i}", MESSAGES, json.dumps(body("anthropic", f"{i} {filler}"))))
    size = path.stat().st_size
    try:
        tracemalloc.start()
        batch = await client.create("big", MESSAGES, path, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await client.aclose()
        await runner.cleanup()
    assert batch.id == "msgbatch_streamed" and batch.total == 10_000
    assert size > 20_000_000 and peak < size / 8
    sent = json.loads(received.read_bytes())
    assert len(sent["requests"]) == 10_000 and sent["requests"][9_999]["custom_id"] == "job-9999"
    assert received.stat().st_size == size + len('{"requests":[]}') - 1


async def test_ten_thousand_lines_make_one_batch_on_the_fake_server(
    server: ThreadedFakeServer, tmp_path: Path
) -> None:
    client = open_batch_api(settings("anthropic", server.base_url))
    assert client is not None
    try:
        path = write_lines(
            client, "anthropic", tmp_path / "in.jsonl", {f"n{i}": f"many {i}" for i in range(10_000)}
        )
        batch = await client.create("many", MESSAGES, path, None)
    finally:
        await client.aclose()
    assert batch.total == 10_000 and server.stats(prompts=False)["batch_lines"] == 10_000
