"""The offline token estimate: exact expected values per endpoint, one row per case."""

from __future__ import annotations

import time
from typing import Any

import pytest

from batchrunner.models import Endpoint
from batchrunner.policy.tokens import (
    DEFAULT_OUTPUT_TOKENS,
    MEDIA_TOKENS,
    TokenEstimate,
    estimate_output_tokens,
    estimate_prompt_tokens,
    estimate_tokens,
)

CHAT, MESSAGES, RESPONSES, EMBEDDINGS = (
    Endpoint.CHAT_COMPLETIONS,
    Endpoint.MESSAGES,
    Endpoint.RESPONSES,
    Endpoint.EMBEDDINGS,
)
BIG_IMAGE = "data:image/png;base64," + "A" * 100_000

# (endpoint, body, expected prompt tokens)
PROMPTS: list[tuple[Endpoint | str, dict[str, Any], int]] = [
    # "system" + "You are terse." + "user" + "Hello there" = 35 bytes -> 9, + 2 messages * 4, + 3
    (
        CHAT,
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hello there"},
            ]
        },
        20,
    ),
    # content parts: "user" + "text" + "Hi" = 10 bytes -> 3, + 4 + 3
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, 10),
    # an image counts MEDIA_TOKENS, not its 100 kB of base64: "user" + "text" + "What?" = 13 -> 4
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What?"},
                        {"type": "image_url", "image_url": {"url": BIG_IMAGE}},
                    ],
                }
            ]
        },
        4 + MEDIA_TOKENS + 4 + 3,
    ),
    # tools are read too: "user" + "x" + "function" + "get_weather" = 24 -> 6, + 4 + 3
    (
        CHAT,
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
        13,
    ),
    # UTF-8 bytes, not characters: "user" + 4 CJK characters (12 bytes) = 16 -> 4, + 4 + 3
    (CHAT, {"messages": [{"role": "user", "content": "你好世界"}]}, 11),
    # a lone surrogate (valid JSON escape) does not crash: "user" + 3 bytes = 7 -> 2, + 4 + 3
    (CHAT, {"messages": [{"role": "user", "content": "\ud800"}]}, 9),
    # Anthropic: "Be brief." (9) + "user" + "text" + "Hi" (10) = 19 -> 5, + 4 + 3
    (
        MESSAGES,
        {"system": "Be brief.", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        12,
    ),
    # Anthropic image blocks count MEDIA_TOKENS: "user" = 4 -> 1, + 4 + 3
    (
        MESSAGES,
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {"data": BIG_IMAGE}}]}]},
        1 + MEDIA_TOKENS + 4 + 3,
    ),
    # Responses: "Write a haiku" (13) + "Be poetic" (9) = 22 -> 6, a string input is one message, + 4 + 3
    (RESPONSES, {"input": "Write a haiku", "instructions": "Be poetic"}, 13),
    # Responses items: "user" + "input_text" + "abcdefgh" = 22 -> 6, + 4 + 3
    (
        RESPONSES,
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "abcdefgh"}]}]},
        13,
    ),
    # embeddings: 40 characters -> 10, no per-message overhead
    (EMBEDDINGS, {"input": "abcd" * 10}, 10),
    # a list of strings: 8 -> 2 and 1 -> 1 (rounded up per input)
    (EMBEDDINGS, {"input": ["a" * 8, "b"]}, 3),
    # token ids count exactly, flat or nested
    (EMBEDDINGS, {"input": [1, 2, 3]}, 3),
    (EMBEDDINGS, {"input": [[1, 2], [3]]}, 3),
    # malformed bodies never raise: nothing to read is 0 (embeddings) or the per-request overhead
    (EMBEDDINGS, {"input": None}, 0),
    (CHAT, {}, 3),
    (CHAT, {"messages": 5, "tools": "x"}, 1 + 3),
    # an endpoint we do not know reads every string: "m" + "abcdefgh" = 9 -> 3, + 3
    ("/v1/completions", {"model": "m", "prompt": "abcdefgh", "temperature": 0.5}, 6),
]


@pytest.mark.parametrize(("endpoint", "body", "expected"), PROMPTS)
def test_prompt_tokens(endpoint: Endpoint | str, body: dict[str, Any], expected: int) -> None:
    assert estimate_prompt_tokens(endpoint, body) == expected


# (endpoint, body, expected output reservation)
OUTPUTS: list[tuple[Endpoint | str, dict[str, Any], int]] = [
    # no cap: the default
    (CHAT, {}, DEFAULT_OUTPUT_TOKENS),
    (MESSAGES, {}, DEFAULT_OUTPUT_TOKENS),
    (RESPONSES, {}, DEFAULT_OUTPUT_TOKENS),
    # embeddings produce no output tokens
    (EMBEDDINGS, {"max_tokens": 50}, 0),
    # chat: max_completion_tokens wins over the older max_tokens
    (CHAT, {"max_tokens": 10}, 10),
    (CHAT, {"max_completion_tokens": 50, "max_tokens": 10}, 50),
    # chat: n choices each get the cap
    (CHAT, {"max_tokens": 100, "n": 3}, 300),
    (CHAT, {"max_tokens": 100, "n": 0}, 100),
    # Anthropic and Responses have their own field
    (MESSAGES, {"max_tokens": 256}, 256),
    (RESPONSES, {"max_output_tokens": 200, "max_tokens": 7}, 200),
    # 0 is a real cap; garbage (bool, negative, float, string) falls back to the default
    (CHAT, {"max_tokens": 0}, 0),
    (CHAT, {"max_tokens": True}, DEFAULT_OUTPUT_TOKENS),
    (CHAT, {"max_tokens": -5}, DEFAULT_OUTPUT_TOKENS),
    (MESSAGES, {"max_tokens": 12.5}, DEFAULT_OUTPUT_TOKENS),
    (RESPONSES, {"max_output_tokens": "100"}, DEFAULT_OUTPUT_TOKENS),
]


@pytest.mark.parametrize(("endpoint", "body", "expected"), OUTPUTS)
def test_output_tokens(endpoint: Endpoint | str, body: dict[str, Any], expected: int) -> None:
    assert estimate_output_tokens(endpoint, body) == expected


def test_estimate_is_prompt_plus_output() -> None:
    body = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 100}
    estimate = estimate_tokens("/v1/chat/completions", body)  # a plain string endpoint works too
    assert estimate == TokenEstimate(prompt_tokens=4 + 4 + 3, output_tokens=100)
    assert estimate.total == 111


def test_estimate_errs_high_against_chars_over_four() -> None:
    # the fake server (and providers) charge ceil(content chars / 4); the estimate must not be lower
    text = "The quick brown fox jumps over the lazy dog. " * 50
    body = {"messages": [{"role": "user", "content": text}]}
    assert estimate_prompt_tokens(CHAT, body) >= -(-len(text) // 4)


def test_fast_enough_to_run_per_job() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. " * 10},
            {"role": "user", "content": [{"type": "text", "text": "Summarise this text. " * 100}]},
        ],
        "max_tokens": 512,
    }
    start = time.perf_counter()
    for _ in range(10_000):
        estimate_tokens(CHAT, body)
    assert time.perf_counter() - start < 2.0  # ~20x headroom on a laptop: microseconds per job
