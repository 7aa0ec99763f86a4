"""Manifest line formats, their checks, which provider serves a line (docs/design.md "Manifest formats")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchrunner.errors import ManifestIssue, UsageError
from batchrunner.manifest import DEFAULT_PROVIDERS, ManifestOptions, iter_manifest, parse_line
from batchrunner.models import Endpoint, JobSpec, ManifestFormat
from batchrunner.policy.tokens import estimate_output_tokens, estimate_prompt_tokens

JOBS_DIR = Path(__file__).resolve().parents[2] / "jobs"

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
EMBEDDINGS = {"model": "text-embedding-3-small", "input": ["a", "b"]}
RESPONSES = {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 20}
PARAMS = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def openai_line(url: str = "/v1/chat/completions", body: Any = None, **extra: Any) -> dict[str, Any]:
    return {"custom_id": "o-1", "method": "POST", "url": url, "body": CHAT if body is None else body, **extra}


def anthropic_line(params: Any = None, **extra: Any) -> dict[str, Any]:
    return {"custom_id": "a-1", "params": PARAMS if params is None else params, **extra}


def parse(line: dict[str, Any] | bytes, **options: Any) -> JobSpec | list[ManifestIssue]:
    raw = line if isinstance(line, bytes) else json.dumps(line).encode()
    return parse_line(raw, line_number=9, file="jobs.jsonl", options=ManifestOptions(**options))


def job(line: dict[str, Any], **options: Any) -> JobSpec:
    result = parse(line, **options)
    assert isinstance(result, JobSpec), result
    return result


def problems(line: dict[str, Any], **options: Any) -> list[tuple[str, str]]:
    """``(field, reason)`` of every issue of ``line``, which must be rejected (as line 9 of jobs.jsonl)."""
    result = parse(line, **options)
    assert isinstance(result, list), result
    assert {(issue.file, issue.line) for issue in result} == {("jobs.jsonl", 9)}
    return [(issue.field, issue.reason) for issue in result]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- OpenAI Batch API lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body", "endpoint"),
    [
        ("/v1/chat/completions", CHAT, Endpoint.CHAT_COMPLETIONS),
        ("/v1/embeddings", EMBEDDINGS, Endpoint.EMBEDDINGS),
        ("/v1/responses", RESPONSES, Endpoint.RESPONSES),
    ],
)
def test_openai_batch_lines_run_unchanged(url: str, body: dict[str, Any], endpoint: Endpoint) -> None:
    spec = job(openai_line(url, body))
    assert spec == JobSpec(
        custom_id="o-1",
        line_number=9,
        format=ManifestFormat.OPENAI_BATCH,
        provider="openai",
        endpoint=endpoint,
        model=body["model"],
        request_json=compact(body),
        metadata_json=None,
        prompt_tokens=estimate_prompt_tokens(endpoint, body),  # estimated once, as the line is read
        output_tokens=estimate_output_tokens(endpoint, body),
    )


def test_openai_bodies_keep_options_batchrunner_does_not_know() -> None:
    body = {**CHAT, "response_format": {"type": "json_object"}, "seed": 7, "logprobs": True}
    assert job(openai_line(body=body)).body == body


def test_a_simple_line_may_ask_for_a_stream_for_either_provider() -> None:
    line = {"id": "s", "prompt": "hi", "model": "m", "stream": True}
    assert job(line).body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    claude = job({**line, "provider": "anthropic"}).body
    assert claude["stream"] is True and claude["max_tokens"] == 1024
    assert "stream" not in job({**line, "stream": False}).body  # as if absent: the same job as before
    assert problems({**line, "stream": 1}) == [("stream", "must be true or false, not a number")]


def test_streamed_chat_and_messages_lines_are_queued_as_written() -> None:
    chat = {**CHAT, "stream": True}
    assert job(openai_line(body=chat)).body == chat  # stream_options are the adapter's to add
    params = {**PARAMS, "stream": True}
    assert job(anthropic_line(params)).request_json == compact(params)
    assert job(openai_line(body={**CHAT, "stream": False})).body == {**CHAT, "stream": False}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (openai_line("/v1/completions"), ("url", "unknown url '/v1/completions'; expected one of")),
        (openai_line("/v1/messages"), ("url", "unknown url '/v1/messages'")),
        (openai_line(method="GET"), ("method", "must be \"POST\", not 'GET'")),
        (openai_line(body=[1]), ("body", "must be an object, not an array")),
        (openai_line(body={"messages": CHAT["messages"]}), ("body.model", "missing (required)")),
        (openai_line(body={**CHAT, "model": 4}), ("body.model", "must be a string, not a number")),
        (openai_line(body={"model": "m"}), ("body.messages", "missing (required)")),
        (openai_line(body={"model": "m", "messages": "hi"}), ("body.messages", "must be a non-empty array")),
        (openai_line(body={"model": "m", "messages": []}), ("body.messages", "must be a non-empty array")),
        (
            openai_line(body={"model": "m", "messages": ["hi"]}),
            ("body.messages.0", "must be a message object"),
        ),
        (
            openai_line(body={"model": "m", "messages": [{"content": "x"}]}),
            ("body.messages.0.role", "must be"),
        ),
        (
            openai_line(body={"model": "m", "messages": [{"role": "user", "content": 5}]}),
            ("body.messages.0.content", "must be a string, an array of parts or null, not a number"),
        ),
        (openai_line(body={**CHAT, "max_tokens": 0}), ("body.max_tokens", "must be an integer >= 1, not 0")),
        (openai_line(body={**CHAT, "max_tokens": True}), ("body.max_tokens", "not a boolean")),
        (openai_line(body={**CHAT, "temperature": 3}), ("body.temperature", "must be a number from 0 to 2")),
        (openai_line(body={**CHAT, "stream": "yes"}), ("body.stream", "must be true or false, not a string")),
        (
            openai_line("/v1/embeddings", {"model": "e", "input": "x", "stream": True}),
            ("body.stream", "streaming is supported for /v1/chat/completions and /v1/messages only"),
        ),
        (
            openai_line("/v1/responses", {"model": "m", "input": "x", "stream": True}),
            ("body.stream", "streaming is supported for /v1/chat/completions and /v1/messages only"),
        ),
        (openai_line("/v1/embeddings", {"model": "e"}), ("body.input", "missing (required)")),
        (openai_line("/v1/embeddings", {"model": "e", "input": []}), ("body.input", "must be a string or a")),
        (openai_line("/v1/responses", {"model": "m", "input": 3}), ("body.input", "not a number")),
        (openai_line(priority="high"), ("priority", "unknown field (an OpenAI Batch line has custom_id,")),
    ],
)
def test_openai_batch_lines_are_checked(line: dict[str, Any], expected: tuple[str, str]) -> None:
    [(field, reason)] = problems(line)
    assert field == expected[0]
    assert expected[1] in reason


def test_an_openai_line_missing_everything_lists_it_all() -> None:
    assert problems({"url": "/v1/embeddings"}) == [
        ("body", "missing (required)"),
        ("custom_id", "missing (required)"),
        ("method", "missing (required)"),
    ]


# --- Anthropic Message Batches lines ------------------------------------------------------------------------


def test_anthropic_lines_call_messages_with_params_as_the_body() -> None:
    params = {**PARAMS, "system": [{"type": "text", "text": "be brief"}], "temperature": 0.5, "top_k": 5}
    spec = job(anthropic_line(params))
    assert (spec.format, spec.provider, spec.endpoint, spec.model) == (
        ManifestFormat.ANTHROPIC_BATCH,
        "anthropic",
        Endpoint.MESSAGES,
        "claude-haiku-4-5",
    )
    assert spec.request_json == compact(params)
    assert spec.custom_id == "a-1"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("hi", ("params", "must be an object, not a string")),
        ({**PARAMS, "max_tokens": None}, ("params.max_tokens", "must be an integer >= 1, not null")),
        ({k: v for k, v in PARAMS.items() if k != "max_tokens"}, ("params.max_tokens", "missing (required)")),
        ({**PARAMS, "model": ""}, ("params.model", "must be a non-empty string")),
        ({**PARAMS, "system": 3}, ("params.system", "must be a string or a non-empty array, not a number")),
        (
            {**PARAMS, "messages": [{"role": "system", "content": "x"}]},
            ("params.messages.0.role", 'must be "user" or "assistant" for Anthropic'),
        ),
        ({**PARAMS, "messages": [{"role": "user"}]}, ("params.messages.0.content", "missing")),
    ],
)
def test_anthropic_lines_are_checked(params: Any, expected: tuple[str, str]) -> None:
    [(field, reason)] = problems(anthropic_line(params))
    assert field == expected[0]
    assert expected[1] in reason


def test_a_line_mixing_formats_is_rejected() -> None:
    assert problems({**openai_line(), "params": PARAMS}) == [
        ("line", "mixes OpenAI Batch fields (method, url, body) with Anthropic's params")
    ]


# --- simple lines ------------------------------------------------------------------------------------------


def test_a_simple_prompt_becomes_a_chat_completion() -> None:
    spec = job(
        {"prompt": "Classify: great", "system": "One word.", "max_tokens": 5, "temperature": 0},
        default_model="m",
    )
    assert (spec.format, spec.provider, spec.endpoint, spec.model) == (
        ManifestFormat.SIMPLE,
        "openai",
        Endpoint.CHAT_COMPLETIONS,
        "m",
    )
    assert spec.request_json == compact(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "One word."},
                {"role": "user", "content": "Classify: great"},
            ],
            "max_tokens": 5,
            "temperature": 0,
        }
    )
    assert spec.custom_id == "line-9"


def test_simple_messages_are_sent_as_they_are() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert job({"id": "x", "messages": messages, "model": "m"}).body == {"model": "m", "messages": messages}


def test_a_simple_line_for_anthropic_becomes_a_messages_call() -> None:
    spec = job({"prompt": "hi", "system": "terse", "temperature": 0.3, "provider": "anthropic", "model": "c"})
    assert (spec.provider, spec.endpoint) == ("anthropic", Endpoint.MESSAGES)
    assert spec.request_json == compact(
        {
            "model": "c",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "hi"}],
            "system": "terse",
            "temperature": 0.3,
        }
    )
    assert (
        job({"prompt": "hi", "max_tokens": 7, "model": "c"}, default_provider="anthropic").body["max_tokens"]
        == 7
    )


def test_an_empty_system_prompt_is_left_out() -> None:
    assert job({"prompt": "hi", "system": "", "model": "m"}).body["messages"] == [
        {"role": "user", "content": "hi"}
    ]


def test_metadata_is_kept_as_compact_json() -> None:
    spec = job({"prompt": "hi", "model": "m", "metadata": {"row": 3, "source": "résumé.csv", "tags": ["a"]}})
    assert spec.metadata_json == '{"row":3,"source":"résumé.csv","tags":["a"]}'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"model": "m"}, ("prompt", "a simple line needs exactly one of prompt and messages")),
        (
            {"prompt": "a", "messages": [{"role": "user", "content": "b"}], "model": "m"},
            ("prompt", "exactly one"),
        ),
        ({"prompt": "", "model": "m"}, ("prompt", "must be a non-empty string")),
        ({"prompt": ["a"], "model": "m"}, ("prompt", "must be a string, not an array")),
        (
            {"messages": {"role": "user"}, "model": "m"},
            ("messages", "must be a non-empty array of messages, not an"),
        ),
        ({"prompt": "a", "model": 3}, ("model", "must be a string, not a number")),
        ({"prompt": "a", "model": "m", "system": None}, ("system", "must be a string, not null")),
        (
            {"prompt": "a", "model": "m", "max_tokens": 1.5},
            ("max_tokens", "must be an integer >= 1, not a number"),
        ),
        (
            {"prompt": "a", "model": "m", "temperature": -1},
            ("temperature", "must be a number from 0 to 2, not -1"),
        ),
        ({"prompt": "a", "model": "m", "metadata": [1]}, ("metadata", "must be an object, not an array")),
        ({"prompt": "a", "model": "m", "provider": 1}, ("provider", "must be a string, not a number")),
        (
            {"prompt": "a", "model": "m", "custom_id": "x"},
            ("custom_id", "unknown field; a simple line may have id,"),
        ),
        ({"prompt": "a", "model": "m", "Prompt": "b"}, ("Prompt", "unknown field")),
        (
            {"messages": [{"role": "system", "content": "s"}], "model": "m", "provider": "anthropic"},
            ("messages.0.role", 'must be "user" or "assistant" for Anthropic'),
        ),
    ],
)
def test_simple_lines_are_checked(line: dict[str, Any], expected: tuple[str, str]) -> None:
    [(field, reason)] = problems(line)
    assert field == expected[0]
    assert expected[1] in reason


def test_a_simple_line_needs_a_model_unless_the_provider_is_fake() -> None:
    assert problems({"prompt": "a"}) == [("model", 'missing: set "model" on the line or pass --model')]
    assert job({"prompt": "a"}, default_model="gpt-4o-mini").model == "gpt-4o-mini"
    assert job({"prompt": "a", "model": "mine"}, default_model="gpt-4o-mini").model == "mine"
    assert job({"prompt": "a"}, default_provider="fake").model == "fake-model"
    assert job({"prompt": "a", "provider": "fake"}).model == "fake-model"
    assert job({"prompt": "a"}, default_provider="fake", default_model="gpt-4o").model == "gpt-4o"


# --- providers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "flag", "expected"),
    [
        # the line's own provider (simple lines) wins
        ({"prompt": "a", "model": "m", "provider": "gemini"}, None, "gemini"),
        ({"prompt": "a", "model": "m", "provider": "anthropic"}, "fake", "anthropic"),
        # then --provider
        ({"prompt": "a", "model": "m"}, "cohere", "cohere"),
        (openai_line(), "fake", "fake"),
        (openai_line(), "gemini", "gemini"),
        (anthropic_line(), "fake", "fake"),
        # then the format's default
        (openai_line(), None, "openai"),
        (anthropic_line(), None, "anthropic"),
        # then openai
        ({"prompt": "a", "model": "m"}, None, "openai"),
    ],
)
def test_which_provider_serves_a_line(line: dict[str, Any], flag: str | None, expected: str) -> None:
    assert job(line, default_provider=flag).provider == expected


@pytest.mark.parametrize(
    ("line", "flag", "reason"),
    [
        (
            openai_line(),
            "anthropic",
            "anthropic (from --provider) cannot serve /v1/chat/completions; providers that",
        ),
        (
            openai_line("/v1/embeddings", EMBEDDINGS),
            "anthropic",
            "anthropic (from --provider) cannot serve /v1/embeddings; "
            "providers that can: cohere, fake, gemini, openai",
        ),
        (
            anthropic_line(),
            "openai",
            "openai (from --provider) cannot serve /v1/messages; providers that can: anthropic",
        ),
        (anthropic_line(), "gemini", "gemini (from --provider) cannot serve /v1/messages"),
        (
            {"prompt": "a", "model": "m", "provider": "mistral"},
            None,
            "unknown provider 'mistral'; known: anthropic,",
        ),
    ],
)
def test_a_provider_that_cannot_serve_the_line_is_an_issue(
    line: dict[str, Any], flag: str | None, reason: str
) -> None:
    [(field, got)] = problems(line, default_provider=flag)
    assert field == "provider"
    assert got.startswith(reason)


def test_known_providers_is_a_parameter() -> None:
    known = DEFAULT_PROVIDERS | {"vllm"}
    spec = job({"prompt": "a", "model": "llama", "provider": "vllm"}, known_providers=known)
    assert (spec.provider, spec.endpoint) == ("vllm", Endpoint.CHAT_COMPLETIONS)  # OpenAI-compatible
    assert job(openai_line(), default_provider="vllm", known_providers=known).provider == "vllm"
    [(field, reason)] = problems(anthropic_line(), known_providers=frozenset({"openai"}))
    assert (field, reason) == ("provider", "unknown provider 'anthropic'; known: openai")


def test_an_unknown_provider_option_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match="unknown provider 'nope'; known: anthropic, cohere, fake, gemini, openai"
    ):
        ManifestOptions(default_provider="nope")


# --- the example manifests in jobs/ -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "count"),
    [
        ("simple.jsonl", ManifestOptions(default_provider="fake"), 20),
        ("simple.jsonl", ManifestOptions(default_model="gpt-4o-mini"), 20),
        ("simple.jsonl", ManifestOptions(default_provider="anthropic", default_model="claude-haiku-4-5"), 20),
        ("openai-batch.jsonl", ManifestOptions(), 10),
        ("openai-batch.jsonl", ManifestOptions(default_provider="fake"), 10),
        ("anthropic-batch.jsonl", ManifestOptions(), 10),
        ("anthropic-batch.jsonl", ManifestOptions(default_provider="fake"), 10),
        ("streaming.jsonl", ManifestOptions(), 6),
        ("streaming.jsonl", ManifestOptions(default_provider="fake"), 6),
    ],
)
def test_the_example_manifests_are_valid(name: str, options: ManifestOptions, count: int) -> None:
    results = list(iter_manifest(JOBS_DIR / name, options))
    assert [item for item in results if not isinstance(item, JobSpec)] == []
    assert len(results) == count


def test_the_examples_cover_every_format_and_endpoint() -> None:
    seen = {
        (spec.format, spec.endpoint)
        for name in ("simple.jsonl", "openai-batch.jsonl", "anthropic-batch.jsonl")
        for spec in iter_manifest(JOBS_DIR / name, ManifestOptions(default_provider="fake"))
        if isinstance(spec, JobSpec)
    }
    assert {endpoint for _, endpoint in seen} == set(Endpoint)
    assert {fmt for fmt, _ in seen} == set(ManifestFormat)
