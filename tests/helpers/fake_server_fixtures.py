"""Fixtures for the fake provider server (a pytest plugin loaded by conftest.py).

- ``fake_server(config=None, **fields)``: start a server in a background thread (its own event loop) on
  127.0.0.1, port 0; ``fields`` are :class:`FakeServerConfig` fields (applied on top of ``config``).
- ``fake_server_process(*args)``: start ``python -m batchrunner.fakeserver --port 0 ARGS...`` and read the
  port from its first stdout line.

Both return a handle with ``.port``, ``.base_url`` (``http://127.0.0.1:PORT``, the Anthropic base URL),
``.openai_base_url`` (``.../v1``), ``.stats(prompts=True)`` and ``.reset()``; every server a test started is
stopped when the test ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from batchrunner.fakeserver import FakeServerConfig
from batchrunner.fakeserver.testing import FakeServerProcess, ThreadedFakeServer

StartFakeServer = Callable[..., ThreadedFakeServer]
StartFakeServerProcess = Callable[..., FakeServerProcess]


@pytest.fixture
def fake_server() -> Iterator[StartFakeServer]:
    """Factory: ``fake_server(FakeServerConfig(...))`` or ``fake_server(rpm=60, latency_ms=5)``."""
    started: list[ThreadedFakeServer] = []

    def start(config: FakeServerConfig | None = None, /, **fields: Any) -> ThreadedFakeServer:
        config = dataclasses.replace(config or FakeServerConfig(), **fields)
        server = ThreadedFakeServer(config).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fake_server_process() -> Iterator[StartFakeServerProcess]:
    """Factory: ``fake_server_process("--p500", "0.1", "--seed", "7")`` runs the server as a subprocess."""
    started: list[FakeServerProcess] = []

    def start(*args: str) -> FakeServerProcess:
        server = FakeServerProcess(args)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()
