"""Manifests and a server for batch-mode tests: half OpenAI simple lines, half Anthropic batch lines."""

from __future__ import annotations

from typing import Any

import pytest

from batchrunner.fakeserver.testing import FakeServerHandle
from helpers.fake_server_fixtures import StartFakeServer


def batch_lines(openai: int, anthropic: int, tag: str = "") -> list[dict[str, Any]]:
    """``openai`` simple lines (``o0``...) and ``anthropic`` Message Batches lines (``a0``...)."""
    lines: list[dict[str, Any]] = [
        {"id": f"o{i}", "prompt": f"{tag}Classify review {i}: fine, slow shipping.", "model": "gpt-4o-mini",
         "max_tokens": 20}
        for i in range(openai)
    ]  # fmt: skip
    lines += [
        {"custom_id": f"a{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 20,
         "messages": [{"role": "user", "content": f"{tag}Summarise note {i}: call back."}]}}
        for i in range(anthropic)
    ]  # fmt: skip
    return lines


def serve_both(
    fake_server: StartFakeServer, monkeypatch: pytest.MonkeyPatch, **config: Any
) -> FakeServerHandle:
    """Start the fake server with ``config`` and point both providers at it."""
    server = fake_server(**config)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    return server
