"""Run the fake server in the current event loop: start it, learn its port, stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from batchrunner.fakeserver.app import STATE, create_app
from batchrunner.fakeserver.batchhttp import BATCHES
from batchrunner.fakeserver.config import HOST, FakeServerConfig

SHUTDOWN_GRACE_S = 1.0
"""How long requests still in flight at shutdown may finish before they are cancelled."""


class FakeServer:
    """A fake server running in this event loop; ``async with await start_server(config) as server: ...``."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the Anthropic SDK's ``base_url``."""
        return f"http://{HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI SDK's ``base_url``."""
        return f"{self.base_url}/v1"

    def stats(self, *, prompts: bool = True) -> dict[str, object]:
        """The books, as ``GET /stats`` returns them."""
        batches = self._runner.app[BATCHES]
        batches.store.settle_all(batches.clock())
        return self._runner.app[STATE].books.snapshot(prompts=prompts)

    def reset(self) -> None:
        """What ``POST /reset`` does: clear the books, the attempt counters and the limiter."""
        self._runner.app[STATE].reset()

    async def close(self) -> None:
        """Stop listening, release hanging requests, give the others a moment, and close every connection."""
        await self._runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def start_server(config: FakeServerConfig) -> FakeServer:
    """Start serving ``config`` on 127.0.0.1 in the running loop; the returned server knows its bound port."""
    runner = web.AppRunner(
        create_app(config),
        access_log=None,  # no per-request logging: benchmarks push thousands of requests a second
        handler_cancellation=True,  # a client that gives up cancels its handler (hangs, latency sleeps)
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, config.port, backlog=1024)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port: int = runner.addresses[0][1]
    return FakeServer(runner, port)


async def serve_until_signalled(config: FakeServerConfig, on_ready: Callable[[FakeServer], None]) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly; ``on_ready`` is called once it listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with await start_server(config) as server:
            on_ready(server)
            await stop.wait()
    finally:
        for signum in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
