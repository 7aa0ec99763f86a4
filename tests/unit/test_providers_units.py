"""Provider pieces without the network: the error table, redaction, Secret, registry, fake (headers:
``test_providers_headers``)."""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from batchrunner.config import load_settings, runsettings
from batchrunner.errors import (
    ConfigError,
    InvalidResponse,
    Overloaded,
    PermanentError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RunStoppingError,
    TransientError,
)
from batchrunner.models import RateLimitInfo, Usage
from batchrunner.providers.anthropic import AnthropicProvider, needs_streaming
from batchrunner.providers.anthropic_http import ANTHROPIC_VERSION, AnthropicHTTPProvider
from batchrunner.providers.base import Provider, ProviderRequest
from batchrunner.providers.catalog import PRESETS
from batchrunner.providers.errors import (
    classify,
    error_from_response,
    redact,
    safe_cause,
    transport_error,
    transport_failure_kind,
)
from batchrunner.providers.fake import FakeProvider
from batchrunner.providers.http import env_proxy
from batchrunner.providers.openai import OpenAIProvider
from batchrunner.providers.openai_http import OpenAIHTTPProvider
from batchrunner.providers.registry import TRANSPORTS, ProviderSettings, build_provider
from batchrunner.secret import Secret

CANARY = "sk-canary-7f3a9c1e5b2d4680aa"

# --- the error table ---------------------------------------------------------------------------------

CLASSIFY_TABLE: list[tuple[int, dict[str, Any], type[ProviderError]]] = [
    (400, {}, PermanentError),  # a bad request fails this job only
    (404, {}, PermanentError),
    (413, {}, PermanentError),  # any other 4xx
    (422, {}, PermanentError),
    (408, {}, TransientError),  # the SDKs retry request timeouts
    (409, {}, TransientError),  # ... and lock conflicts
    (500, {}, TransientError),
    (502, {}, TransientError),
    (503, {}, TransientError),
    (504, {}, TransientError),
    (429, {}, RateLimited),
    (529, {}, Overloaded),
    (500, {"error_type": "overloaded_error"}, Overloaded),  # overloaded whatever the status
    (401, {}, RunStoppingError),  # every job would fail alike
    (403, {}, RunStoppingError),
    (402, {}, RunStoppingError),  # payment required
    (429, {"code": "insufficient_quota"}, RunStoppingError),  # OpenAI quota
    (429, {"error_type": "insufficient_quota"}, RunStoppingError),  # ... as OpenAI also puts it in "type"
    (429, {"code": "enforced_spend_limit_reached"}, RunStoppingError),  # Anthropic spend limit
    (429, {"code": "contract_spend_limit_reached"}, RunStoppingError),
    (400, {"message": "Your credit balance is too low to access the API."}, RunStoppingError),
    (400, {"error_type": "billing_error"}, RunStoppingError),
    (429, {"should_retry": False}, PermanentError),  # x-should-retry: false wins over the status
    (503, {"should_retry": False}, PermanentError),
    (400, {"should_retry": True}, TransientError),  # x-should-retry: true makes a 4xx retryable
    (429, {"should_retry": True}, RateLimited),  # ... and leaves a retryable class as it is
    (529, {"should_retry": True}, Overloaded),
    (
        401,
        {"should_retry": True},
        RunStoppingError,
    ),  # run-stopping ignores the hint (safe: jobs stay pending)
    (200, {"error_type": "overloaded_error"}, Overloaded),  # error events inside a streamed 200
    (200, {"error_type": "rate_limit_error"}, RateLimited),
    (200, {"error_type": "api_error"}, TransientError),
    (200, {"error_type": "invalid_request_error"}, PermanentError),
    (200, {"error_type": "authentication_error"}, RunStoppingError),
]


@pytest.mark.parametrize(("status", "facts", "expected"), CLASSIFY_TABLE)
def test_classify(status: int, facts: dict[str, Any], expected: type[ProviderError]) -> None:
    assert classify(status, **facts) is expected


def test_error_from_response_carries_the_facts() -> None:
    limits = RateLimitInfo(remaining_requests=0)
    error = error_from_response(
        "openai",
        status=429,
        headers={"Retry-After-Ms": "1500", "Retry-After": "9"},
        body={"error": {"message": "Slow down", "type": "requests", "code": "rate_limit_exceeded"}},
        request_id="req_1",
        rate_limits=limits,
        secrets=(),
        now=time.time(),
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after == 1.5
    assert (error.status_code, error.request_id, error.rate_limits) == (429, "req_1", limits)
    assert str(error) == "openai: HTTP 429 rate_limit_exceeded: Slow down"


def test_error_from_response_reads_anthropic_details_and_plain_text_bodies() -> None:
    details = {"error_code": "enforced_spend_limit_reached"}
    spend = {"type": "error", "error": {"type": "rate_limit_error", "message": "m", "details": details}}
    error = error_from_response(
        "anthropic", status=429, headers={}, body=spend, request_id=None, rate_limits=None, secrets=(), now=0
    )
    assert isinstance(error, RunStoppingError)
    html = error_from_response(
        "x", status=502, headers={}, body="<html>bad gateway</html>", request_id=None, rate_limits=None,
        secrets=(), now=0,
    )  # fmt: skip
    assert isinstance(html, TransientError)
    assert "bad gateway" in str(html)


def test_redact_masks_the_key_and_key_shaped_text() -> None:
    text = f"bad key {CANARY}; Incorrect API key provided: sk-proj-****abcd; Authorization: Bearer tok123"
    clean = redact(text, (CANARY,))
    assert CANARY not in clean
    assert "sk-proj" not in clean
    assert "tok123" not in clean
    assert redact("short k stays", ("k",)) == "short k stays"  # dummy keys are not shredded into messages


def test_safe_cause_hides_a_chain_that_holds_the_key() -> None:
    assert safe_cause(ValueError("harmless"), (CANARY,)) is not None
    assert safe_cause(ValueError(f"echo {CANARY}"), (CANARY,)) is None
    outer = RuntimeError("outer")
    outer.__cause__ = ValueError("Incorrect API key provided: sk-abc*****wxyz")
    assert safe_cause(outer) is None


class ConnectTimeout(Exception):  # named like httpx's: the class name is what the classifier reads
    pass


class ReadTimeout(Exception):
    pass


def test_transport_errors_say_whether_the_request_may_be_billed() -> None:
    before = transport_error("p", ConnectTimeout("x"), timed_out=True, timeout_s=3, secrets=())
    after = transport_error("p", ReadTimeout("x"), timed_out=True, timeout_s=3, secrets=())
    refused = transport_error("p", ConnectionRefusedError("no"), timed_out=False, timeout_s=3, secrets=())
    reset = transport_error("p", ConnectionResetError("rst"), timed_out=False, timeout_s=3, secrets=())
    assert isinstance(before, ProviderTimeout) and not before.possibly_billed
    assert isinstance(after, ProviderTimeout) and after.possibly_billed
    assert "no connection within 3 s" in str(before) and "no answer within 3 s" in str(after)
    assert type(refused) is TransientError and not refused.possibly_billed
    assert type(reset) is TransientError and reset.possibly_billed  # the request may have run
    assert str(reset) == "p: connection failed (ConnectionResetError: rst)"


def test_transport_failure_kind() -> None:
    assert transport_failure_kind(ReadTimeout()) == "timeout"
    assert transport_failure_kind(TimeoutError()) == "timeout"
    assert transport_failure_kind(ConnectionResetError()) == "connection"
    assert transport_failure_kind(AssertionError()) is None
    assert transport_failure_kind(ValueError("bad json")) is None


# --- Secret and the registry -------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    secret = Secret(CANARY)
    settings = ProviderSettings(name="openai", kind="openai", api_key=secret)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r:>40}", repr(settings), str([secret])):
        assert CANARY not in shown
    assert secret.get_secret_value() == CANARY
    assert secret == Secret(CANARY) and secret != Secret("other-key-123")
    assert pickle.loads(pickle.dumps(secret)) == secret
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]


def resolved(name: str, env: dict[str, str], **flags: object) -> ProviderSettings:
    """Provider ``name`` as a run resolves it from ``env`` (and flags), with no config file."""
    return load_settings(flags=flags, env=env, cwd=Path.cwd()).provider_settings(name)


@pytest.mark.parametrize(
    ("name", "env", "kind", "base_url"),
    [
        ("openai", {"OPENAI_API_KEY": "k1"}, "openai", "https://api.openai.com/v1"),
        ("openai", {"OPENAI_API_KEY": "k1", "OPENAI_BASE_URL": "http://vllm:8000/v1"}, "openai", "http://vllm:8000/v1"),
        ("anthropic", {"ANTHROPIC_API_KEY": "k2"}, "anthropic", "https://api.anthropic.com"),
        ("gemini", {"GEMINI_API_KEY": "k3"}, "openai", "https://generativelanguage.googleapis.com/v1beta/openai/"),
        ("cohere", {"COHERE_API_KEY": "k4"}, "openai", "https://api.cohere.ai/compatibility/v1"),
        ("fake", {}, "fake", None),
    ],
)  # fmt: skip
def test_presets(name: str, env: dict[str, str], kind: str, base_url: str | None) -> None:
    settings = resolved(name, env)
    assert (settings.name, settings.kind, settings.base_url) == (name, kind, base_url)
    key = PRESETS[name].key_env
    assert settings.api_key == (Secret(env[key]) if key else None)


def test_an_explicit_base_url_wins_over_the_environment() -> None:
    env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://env/v1"}
    assert resolved("openai", env, base_url="http://flag/v1").base_url == "http://flag/v1"


def test_a_missing_key_is_an_actionable_error() -> None:
    with pytest.raises(ConfigError) as caught:
        resolved("openai", {"OPENAI_API_KEY": "  "})
    assert str(caught.value) == (
        'no API key for provider openai: set OPENAI_API_KEY (environment or .env) or api_key = "${VAR}" '
        "in batchrunner.toml"
    )
    with pytest.raises(ConfigError, match="set GEMINI_API_KEY"):
        resolved("gemini", {"OPENAI_API_KEY": "k"})
    with pytest.raises(ConfigError, match="set ANTHROPIC_API_KEY"):
        build_provider(
            "anthropic", ProviderSettings(name="anthropic", kind="anthropic", key_env="ANTHROPIC_API_KEY")
        )
    with pytest.raises(ConfigError, match="unknown provider 'mistral'"):
        resolved("mistral", {})


def test_the_transport_is_a_run_option_and_the_pool_is_the_run_concurrency() -> None:
    env = {"OPENAI_API_KEY": "k"}
    assert (resolved("openai", env).transport, resolved("openai", env).max_connections) == ("http", 32)
    assert resolved("openai", {**env, "BATCHRUNNER_TRANSPORT": "sdk"}).transport == "sdk"
    flagged = resolved("openai", {**env, "BATCHRUNNER_TRANSPORT": "sdk"}, transport="http", concurrency=7)
    assert (flagged.transport, flagged.max_connections) == ("http", 7)
    with pytest.raises(ConfigError, match="BATCHRUNNER_TRANSPORT"):
        resolved("openai", {**env, "BATCHRUNNER_TRANSPORT": "curl"})


def test_the_transport_comes_from_the_config_file_and_is_remembered_by_the_run(tmp_path: Path) -> None:
    (tmp_path / "batchrunner.toml").write_text('[run]\ntransport = "sdk"\n')
    first = load_settings(flags={}, env={}, cwd=tmp_path)
    assert first.run.transport == "sdk"
    remembered = runsettings.snapshot(first, ["fake"])
    assert remembered["run"]["transport"] == "sdk"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    later = load_settings(flags={}, env={}, cwd=elsewhere)  # no file: the default, http
    notes: list[str] = []
    assert runsettings.apply(remembered, later, notes.append).run.transport == "sdk"
    given = load_settings(flags={"transport": "http"}, env={}, cwd=elsewhere)
    assert runsettings.apply(remembered, given, notes.append).run.transport == "http"
    assert notes == ["using --transport http instead of the run's sdk"]
    del remembered["run"]["transport"]  # a run stored before the option existed: this invocation's
    assert runsettings.apply(remembered, later, notes.append).run.transport == "http"


def test_a_resume_names_where_the_base_url_it_does_not_use_came_from(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "k"}
    first = load_settings(flags={"base_url": "http://127.0.0.1:9/v1"}, env=env, cwd=tmp_path)
    remembered = runsettings.snapshot(first, ["openai"])
    notes: list[str] = []
    runsettings.apply(remembered, load_settings(flags={}, env=env, cwd=tmp_path), notes.append)
    assert notes == [
        "openai: using the run's base URL http://127.0.0.1:9/v1, not the default https://api.openai.com/v1 "
        "(pass --base-url https://api.openai.com/v1 to use that)"
    ]
    notes.clear()
    elsewhere = {**env, "OPENAI_BASE_URL": "http://127.0.0.1:8/v1"}
    runsettings.apply(remembered, load_settings(flags={}, env=elsewhere, cwd=tmp_path), notes.append)
    assert notes == [
        "openai: using the run's base URL http://127.0.0.1:9/v1, not http://127.0.0.1:8/v1 from the "
        "environment or config file (pass --base-url http://127.0.0.1:8/v1 to use that)"
    ]


def test_the_http_transport_sends_the_sdks_anthropic_version() -> None:
    import anthropic

    assert ANTHROPIC_VERSION == anthropic._constants.ANTHROPIC_API_VERSION


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown kind"):
        ProviderSettings(name="x", kind="azure")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timeout_s"):
        ProviderSettings(name="x", kind="fake", timeout_s=0)


ADAPTERS: dict[str, tuple[type[Provider], type[Provider]]] = {
    "http": (OpenAIHTTPProvider, AnthropicHTTPProvider),
    "sdk": (OpenAIProvider, AnthropicProvider),
}
"""The OpenAI and Anthropic adapters of each transport."""


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_build_provider_builds_each_kind(transport: str) -> None:
    built: list[Provider] = [
        build_provider("fake", resolved("fake", {}, transport=transport)),
        build_provider("gemini", resolved("gemini", {"GEMINI_API_KEY": CANARY}, transport=transport)),
        build_provider("claude", resolved("anthropic", {"ANTHROPIC_API_KEY": CANARY}, transport=transport)),
    ]
    try:
        assert [type(p) for p in built] == [FakeProvider, *ADAPTERS[transport]]
        assert [p.name for p in built] == ["fake", "gemini", "claude"]
        assert "generativelanguage.googleapis.com" in repr(built[1])
        assert all(CANARY not in repr(p) for p in built)
    finally:
        for provider in built:
            await provider.aclose()


@pytest.mark.parametrize(
    ("body", "streamed"),
    [
        ({"model": "claude-x", "max_tokens": 21_333}, False),  # 3600 s * 21333 / 128000 = 599.99 s
        ({"model": "claude-x", "max_tokens": 21_334}, True),  # just over the SDK's 10 minutes
        ({"model": "claude-opus-4-0", "max_tokens": 8_192}, False),  # at a per-model cap
        ({"model": "claude-opus-4-0", "max_tokens": 8_193}, True),  # above it
        ({"model": "claude-x", "max_tokens": 10, "stream": True}, True),  # asked for
        ({"model": "claude-x"}, False),  # no max_tokens: the API will say so
    ],
)
def test_needs_streaming_mirrors_the_sdk_rule(body: dict[str, Any], streamed: bool) -> None:
    assert needs_streaming(body) is streamed


# --- the fake provider -------------------------------------------------------------------------------


HI = [{"role": "user", "content": "hi"}]
RESPONSES_TEXT = ("output", 0, "content", 0, "text")


def chat(prompt: str, **extra: Any) -> ProviderRequest:
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": prompt}], **extra}
    return ProviderRequest(endpoint="/v1/chat/completions", body=body, timeout_s=5)


async def test_fake_is_deterministic() -> None:
    first, again = FakeProvider(), FakeProvider(name="other")
    a = await first.call(chat("What is the capital of France?"))
    b = await again.call(chat("What is the capital of France?"))
    c = await first.call(chat("What is the capital of Spain?"))
    assert a.response_json == b.response_json and a.output_text == b.output_text and a.usage == b.usage
    assert a.output_text != c.output_text
    assert a.output_text is not None and "What is the capital of France?" in a.output_text
    assert a.usage == Usage(input_tokens=8, output_tokens=a.usage.output_tokens)  # 30 chars -> 8 tokens
    data = json.loads(a.response_json)
    assert data["choices"][0]["message"]["content"] == a.output_text
    assert data["usage"]["prompt_tokens"] == 8 and data["choices"][0]["finish_reason"] == "stop"


async def test_fake_respects_the_output_cap() -> None:
    capped = await FakeProvider().call(chat("Tell me a long story", max_tokens=2))
    assert capped.usage.output_tokens <= 2
    assert json.loads(capped.response_json)["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("endpoint", "body", "text_path"),
    [
        ("/v1/responses", {"model": "m", "input": "hi", "max_output_tokens": 50}, RESPONSES_TEXT),
        ("/v1/messages", {"model": "m", "max_tokens": 50, "messages": HI}, ("content", 0, "text")),
        ("/v1/embeddings", {"model": "m", "input": ["a", "b"], "dimensions": 4}, None),
        ("/v1/completions", {"model": "m", "prompt": "hi"}, ("output_text",)),
    ],
)  # fmt: skip
async def test_fake_answers_in_each_endpoint_shape(
    endpoint: str, body: dict[str, Any], text_path: tuple[str | int, ...] | None
) -> None:
    response = await FakeProvider().call(ProviderRequest(endpoint=endpoint, body=body, timeout_s=5))
    data: Any = json.loads(response.response_json)
    if text_path is None:
        assert response.output_text is None
        assert [len(item["embedding"]) for item in data["data"]] == [4, 4]
        assert response.usage == Usage(input_tokens=1)
        return
    for step in text_path:
        data = data[step]
    assert data == response.output_text
    assert response.usage.input_tokens == 1 and response.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/chat/completions", {"messages": HI}),  # no model
        ("/v1/chat/completions", {"model": "m", "messages": []}),
        ("/v1/messages", {"model": "m", "messages": HI}),  # no max_tokens
        ("/v1/responses", {"model": "m"}),
        ("/v1/embeddings", {"model": "m", "input": []}),
        ("/v1/chat/completions", {"model": "m", "messages": HI, "max_tokens": 0}),
    ],
)  # fmt: skip
async def test_fake_rejects_what_the_real_api_would(endpoint: str, body: dict[str, Any]) -> None:
    with pytest.raises(PermanentError):
        await FakeProvider().call(ProviderRequest(endpoint=endpoint, body=body, timeout_s=5))


async def test_fake_latency_and_timeout() -> None:
    slow = FakeProvider(latency_ms=30)
    started = asyncio.get_running_loop().time()
    await slow.call(chat("hi"))
    assert asyncio.get_running_loop().time() - started >= 0.025
    with pytest.raises(ProviderTimeout):
        await slow.call(
            ProviderRequest(endpoint="/v1/chat/completions", body=chat("hi").body, timeout_s=0.01)
        )
    with pytest.raises(ValueError):
        FakeProvider(latency_ms=-1)


def test_invalid_response_is_transient() -> None:
    assert issubclass(InvalidResponse, TransientError)  # retried, never stored (docs/reliability.md rule 6)


def test_the_http_transport_takes_the_proxy_httpx_would(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "vllm.internal")
    assert env_proxy("https://api.openai.com/v1") == "http://proxy.corp:3128"
    assert env_proxy("http://api.openai.com/v1") is None  # no HTTP_PROXY
    assert env_proxy("https://vllm.internal:8000/v1") is None
