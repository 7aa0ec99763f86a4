"""The adapters end to end over HTTP to the fake provider server on 127.0.0.1, over both transports.

Every test runs twice, through the real SDKs (``sdk``) and through batchrunner's own aiohttp transport
(``http``), so the two cannot drift: the same answers, errors, timeouts and redaction.

Faults are scripted with ``[[fault:*KIND]]`` directives in the prompt (every attempt of that prompt gets the
fault). Every provider here holds a canary key, and every error is checked for it (message and the chained
traceback). Cases the fake server cannot produce (a bare ``retry-after``, ``x-should-retry: false``,
Anthropic's spend-limit code, error events mid-stream ...) are served by a tiny scripted server below.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import socket
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers.fake_server_fixtures import StartFakeServer
from helpers.providers import make_provider

from batchrunner.config import load_settings
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
from batchrunner.fakeserver.testing import ThreadedFakeServer
from batchrunner.models import Usage
from batchrunner.providers.base import Provider, ProviderRequest, ProviderResponse
from batchrunner.providers.registry import TRANSPORTS, Transport, build_provider

CANARY = "sk-canary-0d6f1e2a9b8c7d6e5f4a3b2c"
LONG_PROMPT = "cache me " * 560  # 5040 chars -> 1260 input tokens; the server reports 512 of them cached


def make(api: str, base_url: str, transport: Transport) -> Provider:
    """The adapter for ``api`` over ``transport``, holding the test's key."""
    return make_provider(api, base_url, transport, CANARY)


@pytest.fixture
def server(fake_server: StartFakeServer) -> ThreadedFakeServer:
    return fake_server()


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


def chat(prompt: str, *, timeout_s: float = 10, **extra: Any) -> ProviderRequest:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": prompt}], **extra}
    return ProviderRequest(endpoint="/v1/chat/completions", body=body, timeout_s=timeout_s)


def message(prompt: str, *, max_tokens: int = 100, timeout_s: float = 10, **extra: Any) -> ProviderRequest:
    body = {
        "model": "claude-test",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    return ProviderRequest(endpoint="/v1/messages", body={**body, **extra}, timeout_s=timeout_s)


def assert_no_canary(error: BaseException) -> None:
    assert CANARY not in str(error)
    assert CANARY not in "".join(traceback.format_exception(error))


# --- answers -----------------------------------------------------------------------------------------


async def test_chat_completion(oai: Provider) -> None:
    response = await oai.call(chat("What is a fake server?"))
    data = json.loads(response.response_json)
    assert response.output_text == data["choices"][0]["message"]["content"] and response.output_text
    assert response.usage == Usage(input_tokens=6, output_tokens=data["usage"]["completion_tokens"])
    assert response.request_id is not None and response.request_id.startswith("req_")
    assert (response.model, response.status_code, response.rate_limits) == ("gpt-test", 200, None)


async def test_cached_tokens_are_read_from_every_api(oai: Provider, ant: Provider) -> None:
    responses_request = ProviderRequest(
        endpoint="/v1/responses", body={"model": "gpt-test", "input": LONG_PROMPT}, timeout_s=10
    )
    for response in (
        await oai.call(chat(LONG_PROMPT)),
        await oai.call(responses_request),
        await ant.call(message(LONG_PROMPT)),  # Anthropic's input_tokens exclude cache reads: added back
    ):
        assert response.usage.output_tokens > 0
        assert (response.usage.input_tokens, response.usage.cached_tokens) == (1260, 512), response.usage
        assert json.loads(response.response_json)["usage"]  # as received


async def test_responses_api(oai: Provider) -> None:
    request = ProviderRequest(
        endpoint="/v1/responses",
        body={"model": "gpt-test", "input": "Say hi", "max_output_tokens": 50},
        timeout_s=10,
    )
    response = await oai.call(request)
    data = json.loads(response.response_json)
    texts = [
        part["text"] for item in data["output"] for part in item["content"] if part["type"] == "output_text"
    ]
    assert response.output_text == "".join(texts) and response.output_text
    assert response.usage.input_tokens == data["usage"]["input_tokens"] == 2
    assert response.usage.output_tokens == data["usage"]["output_tokens"]


async def test_embeddings(oai: Provider) -> None:
    request = ProviderRequest(
        endpoint="/v1/embeddings",
        body={"model": "emb-test", "input": ["one", "two"], "dimensions": 3},
        timeout_s=10,
    )
    response = await oai.call(request)
    assert response.output_text is None  # the vectors stay in response_json
    assert [len(item["embedding"]) for item in json.loads(response.response_json)["data"]] == [3, 3]
    assert response.usage == Usage(input_tokens=2)


async def test_anthropic_message(ant: Provider) -> None:
    response = await ant.call(message("What is a fake server?", system="Be brief."))
    data = json.loads(response.response_json)
    assert response.output_text == data["content"][0]["text"] and response.output_text
    assert response.usage == Usage(input_tokens=8, output_tokens=data["usage"]["output_tokens"])  # 31 chars
    assert response.request_id is not None and response.request_id == data["id"].replace("msg_", "req_")
    assert response.model == "claude-test"


async def test_rate_limit_headers_are_recorded(fake_server: StartFakeServer, transport: Transport) -> None:
    server = fake_server(rpm=6000, tpm=6_000_000)
    oai = make("openai", server.openai_base_url, transport)
    ant = make("anthropic", server.base_url, transport)
    try:
        for response in (await oai.call(chat("hello")), await ant.call(message("hello"))):
            limits = response.rate_limits
            assert limits is not None
            assert limits.remaining_requests is not None and 0 < limits.remaining_requests < 6000
            assert limits.remaining_tokens is not None and 0 < limits.remaining_tokens < 6_000_000
            assert limits.reset_requests_s is not None and 0 <= limits.reset_requests_s <= 2
            assert limits.reset_tokens_s is not None and 0 <= limits.reset_tokens_s <= 2
    finally:
        await oai.aclose()
        await ant.aclose()


async def test_a_long_anthropic_request_is_streamed_and_aggregated(ant: Provider) -> None:
    plain = await ant.call(message("Stream me", max_tokens=100))
    streamed = await ant.call(message("Stream me", max_tokens=30_000))  # > 10 minutes by the SDK's estimate
    asked = await ant.call(message("Stream me", stream=True))
    assert streamed.output_text == asked.output_text == plain.output_text and plain.output_text
    assert streamed.usage == asked.usage == plain.usage
    assert json.loads(streamed.response_json)["content"] == json.loads(plain.response_json)["content"]
    assert streamed.request_id is not None and streamed.request_id.startswith("req_")
    # The broken-stream fault only exists on the streamed path, so this proves the request was streamed.
    with pytest.raises(InvalidResponse, match="event stream"):
        await ant.call(message("[[fault:*bad-json]] Stream me", max_tokens=30_000))


async def test_a_streamed_request_fails_like_a_plain_one(ant: Provider) -> None:
    with pytest.raises(Overloaded):
        await ant.call(message("[[fault:*529]] x", max_tokens=30_000))
    with pytest.raises(TransientError) as caught:
        await ant.call(message("[[fault:*truncate]] x", max_tokens=30_000))
    assert caught.value.possibly_billed
    with pytest.raises(PermanentError, match="HTTP 400 invalid_request_error: messages"):
        await ant.call(
            ProviderRequest(endpoint="/v1/messages", body={"model": "m", "stream": True}, timeout_s=5)
        )


async def test_no_usage_is_zeros_and_a_warning(
    oai: Provider, ant: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="batchrunner.providers")
    for provider, request in (
        (oai, chat("[[fault:*no-usage]] hi")),
        (ant, message("[[fault:*no-usage]] hi")),
    ):
        response: ProviderResponse = await provider.call(request)
        assert response.output_text and response.usage == Usage()
        assert "usage" not in json.loads(response.response_json)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "no usage" in r.getMessage()]
    assert len(warnings) == 2
    await oai.call(chat("[[fault:*no-usage]] again"))  # warned once per endpoint, then at DEBUG
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


# --- errors ------------------------------------------------------------------------------------------

ERROR_TABLE: list[tuple[str, type[ProviderError], int | None]] = [
    ("429", RateLimited, 429),
    ("429-date", RateLimited, 429),
    ("529", Overloaded, 529),
    ("500", TransientError, 500),
    ("502", TransientError, 502),
    ("503", TransientError, 503),
    ("504", TransientError, 504),
    ("408", TransientError, 408),
    ("409", TransientError, 409),
    ("400", PermanentError, 400),
    ("404", PermanentError, 404),
    ("422", PermanentError, 422),
    ("401", RunStoppingError, 401),
    ("403", RunStoppingError, 403),
    ("quota", RunStoppingError, None),  # OpenAI 429 insufficient_quota / Anthropic 400 credit balance
    ("credit", RunStoppingError, None),
    ("reset", TransientError, None),
    ("truncate", TransientError, None),
    ("bad-json", InvalidResponse, 200),
    ("html", InvalidResponse, 200),
]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize(("fault", "expected", "status"), ERROR_TABLE)
async def test_each_fault_maps_to_its_error_class(
    oai: Provider,
    ant: Provider,
    api: str,
    fault: str,
    expected: type[ProviderError],
    status: int | None,
) -> None:
    prompt = f"[[fault:*{fault}]] please answer"
    with pytest.raises(ProviderError) as caught:
        if api == "openai":
            await oai.call(chat(prompt))
        else:
            await ant.call(message(prompt))
    error = caught.value
    assert type(error) is expected, (fault, api, error)
    assert str(error).startswith(f"{api}: ")
    assert_no_canary(error)
    if status is not None:
        assert error.status_code == status
    if error.status_code is not None and fault not in ("bad-json", "html"):
        assert error.request_id is not None and error.request_id.startswith("req_")
    if isinstance(error, RateLimited) and not isinstance(error, Overloaded):
        assert error.retry_after is not None
        assert error.retry_after == 1.0 if fault == "429" else 0 < error.retry_after <= 2  # ms, else the date
    if fault in ("reset", "truncate", "bad-json", "html"):
        assert error.possibly_billed  # the request was sent: the provider may have run it


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["400", "429", "401", "529", "quota", "credit"])
async def test_both_transports_record_the_same_error(
    server: ThreadedFakeServer, api: str, fault: str
) -> None:
    """The stored error body, message and class agree between the SDK and the http transport."""
    base_url = server.openai_base_url if api == "openai" else server.base_url
    seen = []
    for transport in TRANSPORTS:
        provider = make(api, base_url, transport)
        prompt = f"[[fault:*{fault}]] same"
        try:
            with pytest.raises(ProviderError) as caught:
                await provider.call(chat(prompt) if api == "openai" else message(prompt))
        finally:
            await provider.aclose()
        error, ids = caught.value, re.compile(r"req_[0-9a-f]+")
        body = json.loads(error.error_body) if error.error_body is not None else None
        seen.append(
            (type(error), ids.sub("ID", str(error)), ids.sub("ID", json.dumps(body)), error.status_code)
        )
    assert seen[0] == seen[1]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/embeddings", {"model": "e", "input": "[[fault:*html]] x"}),
        ("/v1/responses", {"model": "r", "input": "[[fault:*bad-json]] x"}),
    ],
)
async def test_invalid_bodies_on_other_endpoints(oai: Provider, endpoint: str, body: dict[str, Any]) -> None:
    with pytest.raises(InvalidResponse):
        await oai.call(ProviderRequest(endpoint=endpoint, body=body, timeout_s=10))


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_hang_is_a_timeout_that_may_be_billed(oai: Provider, ant: Provider, api: str) -> None:
    with pytest.raises(ProviderTimeout) as caught:
        if api == "openai":
            await oai.call(chat("[[fault:*hang]] x", timeout_s=0.3))
        else:
            await ant.call(message("[[fault:*hang]] x", timeout_s=0.3))
    assert caught.value.possibly_billed
    assert "no answer within 0.3 s" in str(caught.value)


async def test_on_sent_is_told_once_as_the_request_goes_out(
    oai: Provider, ant: Provider, transport: Transport
) -> None:
    """The engine records a job as sent from ``on_sent``: once per call, plain or streamed; over ``http``
    never for a request whose connection was refused (over the SDKs it is told just before the call)."""
    told: list[str] = []
    for provider, request in (
        (oai, chat("sent")), (oai, chat("sent", stream=True)),
        (ant, message("sent")), (ant, message("sent", stream=True)),
    ):  # fmt: skip
        await provider.call(replace(request, on_sent=functools.partial(told.append, provider.name)))
    assert told == ["openai", "openai", "anthropic", "anthropic"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    refused = make("openai", f"http://127.0.0.1:{port}/v1", transport)
    try:
        with pytest.raises(TransientError):
            await refused.call(replace(chat("x"), on_sent=lambda: told.append("refused")))
    finally:
        await refused.aclose()
    assert told.count("refused") == (0 if transport == "http" else 1)


async def test_a_refused_connection_is_transient_and_not_billed(transport: Transport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    for provider in (
        make("openai", f"http://127.0.0.1:{port}/v1", transport),
        make("anthropic", f"http://127.0.0.1:{port}", transport),
    ):
        request = chat("x") if provider.name == "openai" else message("x")
        try:
            with pytest.raises(TransientError) as caught:
                await provider.call(request)
        finally:
            await provider.aclose()
        assert type(caught.value) is TransientError and not caught.value.possibly_billed
        assert_no_canary(caught.value)


async def test_an_echoed_key_is_redacted(oai: Provider, ant: Provider) -> None:
    """The 404 fault echoes the model name; a model named like the key must not leak it."""
    for provider, request in (
        (oai, chat("[[fault:*404]] x", model=CANARY)),
        (ant, message("[[fault:*404]] x", model=CANARY)),
    ):
        with pytest.raises(PermanentError) as caught:
            await provider.call(request)
        assert "***" in str(caught.value)
        assert caught.value.__cause__ is None  # the SDK's own message held the key: not chained
        assert_no_canary(caught.value)


async def test_the_key_stays_out_of_debug_logs(
    oai: Provider, ant: Provider, transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/reliability.md rule 11 covers the SDKs' debug logs too (they log request options and headers)."""
    caplog.set_level(logging.DEBUG)  # every logger: openai, anthropic, httpx2, httpcore, batchrunner
    await oai.call(chat("log me"))
    await ant.call(message("log me"))
    await ant.call(message("log me", max_tokens=30_000))
    with pytest.raises(RunStoppingError):
        await oai.call(chat("[[fault:*401]] log me"))
    assert caplog.records or transport == "http"  # the SDKs did log at DEBUG (aiohttp logs nothing)
    assert CANARY not in caplog.text


async def test_unsupported_requests_fail_permanently(oai: Provider, ant: Provider) -> None:
    with pytest.raises(PermanentError, match="not served"):
        await oai.call(ProviderRequest(endpoint="/v1/messages", body={}, timeout_s=5))
    with pytest.raises(PermanentError, match="not served"):
        await ant.call(ProviderRequest(endpoint="/v1/chat/completions", body={}, timeout_s=5))
    streamed_response = ProviderRequest(
        endpoint="/v1/responses", body={"model": "m", "input": "x", "stream": True}, timeout_s=5
    )
    with pytest.raises(PermanentError, match="streaming is supported for /v1/chat/completions only"):
        await oai.call(streamed_response)


# --- what the fake server does not send: a scripted server --------------------------------------------


@dataclass
class Scripted:
    """Answers every POST with ``status``, ``headers`` and ``body`` (``events``: an SSE stream instead)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    content_type: str = "application/json"
    events: list[tuple[str, dict[str, Any]]] | None = None
    port: int = 0
    received: list[dict[str, str]] = field(default_factory=list)
    """The headers of every request, in order."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.received.append(dict(request.headers))  # as sent (a later header of a name wins)
        if self.events is None:
            return web.Response(
                status=self.status, body=self.body, headers=self.headers, content_type=self.content_type
            )
        response = web.StreamResponse(status=200, headers=self.headers)
        response.content_type = "text/event-stream"
        await response.prepare(request)
        for name, data in self.events:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    script = Scripted()
    app = web.Application()
    app.router.add_post("/{tail:.*}", script.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    script.port = runner.addresses[0][1]
    yield script
    await runner.cleanup()


async def scripted_call(
    script: Scripted, api: str, transport: Transport, request: ProviderRequest | None = None
) -> ProviderResponse:
    base_url = f"http://127.0.0.1:{script.port}" + ("/v1" if api == "openai" else "")
    provider = make(api, base_url, transport)
    try:
        return await provider.call(request or (chat("x") if api == "openai" else message("x")))
    finally:
        await provider.aclose()


def error_body(api: str, type_: str, message_: str, **extra: Any) -> bytes:
    error = {"type": type_, "message": message_, **extra}
    return json.dumps({"error": error} if api == "openai" else {"type": "error", "error": error}).encode()


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_retry_after_in_plain_seconds(scripted: Scripted, transport: Transport, api: str) -> None:
    scripted.status, scripted.headers = 429, {"retry-after": "7"}
    scripted.body = error_body(api, "rate_limit_error", "slow down")
    with pytest.raises(RateLimited) as caught:
        await scripted_call(scripted, api, transport)
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_x_should_retry_overrides_the_status(
    scripted: Scripted, transport: Transport, api: str
) -> None:
    scripted.status, scripted.headers = 500, {"x-should-retry": "false"}
    scripted.body = error_body(api, "api_error", "do not retry this")
    with pytest.raises(PermanentError):
        await scripted_call(scripted, api, transport)
    scripted.status, scripted.headers = 400, {"x-should-retry": "true"}
    with pytest.raises(TransientError):
        await scripted_call(scripted, api, transport)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_proxy_error_page_is_recorded_alike(scripted: Scripted, api: str) -> None:
    """A 502 HTML page from a proxy: the same error and stored body over both transports."""
    scripted.status, scripted.content_type = 502, "text/html"
    scripted.body = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
    seen = []
    for transport in TRANSPORTS:
        with pytest.raises(TransientError) as caught:
            await scripted_call(scripted, api, transport)
        seen.append((str(caught.value), caught.value.error_body, caught.value.status_code))
    assert seen[0] == seen[1] and seen[0][2] == 502 and "Bad Gateway" in str(seen[0][1])


async def test_an_anthropic_spend_limit_stops_the_run(scripted: Scripted, transport: Transport) -> None:
    scripted.status = 429
    scripted.body = error_body(
        "anthropic", "rate_limit_error", "spend limit", details={"error_code": "enforced_spend_limit_reached"}
    )
    with pytest.raises(RunStoppingError):
        await scripted_call(scripted, "anthropic", transport)


@pytest.mark.parametrize(
    ("api", "body", "reason"),
    [
        ("openai", {"id": "x", "object": "chat.completion", "usage": {}}, "without 'choices'"),
        ("openai", [1, 2], "not an object"),
        ("anthropic", {"type": "message", "usage": {}}, "without a 'content' list"),
    ],
)
async def test_a_200_without_the_promised_fields_is_invalid(
    scripted: Scripted, transport: Transport, api: str, body: Any, reason: str
) -> None:
    scripted.body = json.dumps(body).encode()
    with pytest.raises(InvalidResponse, match=reason) as caught:
        await scripted_call(scripted, api, transport)
    assert caught.value.status_code == 200 and caught.value.possibly_billed


async def test_a_failed_response_is_invalid(scripted: Scripted, transport: Transport) -> None:
    scripted.body = json.dumps(
        {"status": "failed", "error": {"message": "model crashed"}, "output": []}
    ).encode()
    request = ProviderRequest(endpoint="/v1/responses", body={"model": "m", "input": "x"}, timeout_s=5)
    with pytest.raises(InvalidResponse, match="model crashed"):
        await scripted_call(scripted, "openai", transport, request)


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", Overloaded),
        ("api_error", TransientError),
        ("invalid_request_error", PermanentError),
    ],
)
async def test_an_error_event_mid_stream(
    scripted: Scripted, transport: Transport, error_type: str, expected: type[ProviderError]
) -> None:
    scripted.events = [
        ("message_start", START),
        ("error", {"type": "error", "error": {"type": error_type, "message": "boom"}}),
    ]
    with pytest.raises(ProviderError) as caught:
        await scripted_call(scripted, "anthropic", transport, message("x", max_tokens=30_000))
    assert type(caught.value) is expected
    assert "error event" in str(caught.value)


async def test_a_stream_without_a_message_is_cut(scripted: Scripted, transport: Transport) -> None:
    scripted.events = [("ping", {"type": "ping"})]
    with pytest.raises(TransientError, match="the stream ended after 1 events, before its end"):
        await scripted_call(scripted, "anthropic", transport, message("x", max_tokens=30_000))


async def test_the_openai_organization_and_project_are_sent_over_both_transports(
    scripted: Scripted, transport: Transport
) -> None:
    scripted.body = json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}], "usage": {}}
    ).encode()
    env = {"OPENAI_API_KEY": CANARY, "OPENAI_ORG_ID": "org-abc", "OPENAI_PROJECT_ID": "proj_1"}
    settings = load_settings(flags={"transport": transport}, env=env, cwd=Path.cwd())
    resolved = replace(settings.provider_settings("openai"), base_url=f"http://127.0.0.1:{scripted.port}/v1")
    provider = build_provider("openai", resolved)
    try:
        assert (await provider.call(chat("x"))).output_text == "ok"
    finally:
        await provider.aclose()
    [headers] = [{name.lower(): value for name, value in sent.items()} for sent in scripted.received]
    assert headers["openai-organization"] == "org-abc" and headers["openai-project"] == "proj_1"
    assert settings.provider_config("anthropic").headers == {}  # OpenAI's headers only


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_server_that_ignores_stream_is_read_as_the_whole_answer(
    scripted: Scripted, transport: Transport, api: str
) -> None:
    """Some OpenAI-compatible servers answer a streamed request with one JSON body: that is the answer,
    not a stream that never began (which would be retried and paid for again)."""
    chat_answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}}]}
    message_answer = {"type": "message", "content": [{"type": "text", "text": "whole"}]}
    answer = chat_answer if api == "openai" else message_answer
    scripted.body = json.dumps({**answer, "usage": {}}).encode()
    request = chat("x", stream=True) if api == "openai" else message("x", stream=True)
    response = await scripted_call(scripted, api, transport, request)
    assert response.output_text == "whole" and response.ttft_ms is None and response.stream_events is None
    assert json.loads(response.response_json) == json.loads(scripted.body)  # stored as received
