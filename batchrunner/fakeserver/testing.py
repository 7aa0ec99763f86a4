"""The fake server outside the caller's event loop, for tests and benchmarks.

- :class:`ThreadedFakeServer`: its own event loop in a background thread (cheap; shares the process).
- :class:`FakeServerProcess`: a ``python -m batchrunner.fakeserver`` subprocess (its own CPU; survives a
  client that is killed), its port read from the first stdout line.

Both are :class:`FakeServerHandle` objects: ``base_url``, ``openai_base_url``, and blocking ``stats()`` /
``reset()`` over HTTP, usable from sync code and from async tests alike (the server runs elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Self

from batchrunner.fakeserver.config import HOST, FakeServerConfig
from batchrunner.fakeserver.server import start_server

READY_LINE = re.compile(r"^listening on http://127\.0\.0\.1:(\d+)$")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeServerHandle:
    """A running fake server seen from outside: URLs and its books."""

    def __init__(self, port: int) -> None:
        self.port = port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the Anthropic SDK's ``base_url``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the OpenAI SDK's ``base_url``)."""
        return f"{self.base_url}/v1"

    def stats(self, *, prompts: bool = True) -> dict[str, Any]:
        """``GET /stats``: the books (see :mod:`batchrunner.fakeserver`)."""
        query = "" if prompts else "?prompts=0"
        with _NO_PROXY.open(f"{self.base_url}/stats{query}", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
        return stats

    def reset(self) -> None:
        """``POST /reset``: clear the books, the attempt counters and the limiter."""
        request = urllib.request.Request(f"{self.base_url}/reset", data=b"", method="POST")
        with _NO_PROXY.open(request, timeout=10) as response:
            response.read()


class ThreadedFakeServer(FakeServerHandle):
    """The fake server on its own event loop in a daemon thread; ``with ThreadedFakeServer(config) as s:``."""

    def __init__(self, config: FakeServerConfig | None = None) -> None:
        super().__init__(0)
        self.config = config or FakeServerConfig()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; returns once the port is bound (re-raises a failure to start)."""
        self._thread = threading.Thread(target=self._run, name=f"fake-server-{id(self):x}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the fake server did not start in time")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await start_server(self.config)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = server.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (hanging requests are released, connections closed) and join the thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._error is None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the fake server did not stop in time")
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FakeServerProcess(FakeServerHandle):
    """``python -m batchrunner.fakeserver --port 0 ARGS...`` in a subprocess; SIGTERM stops it."""

    def __init__(self, args: Sequence[str] = (), *, python: str = sys.executable) -> None:
        super().__init__(0)
        self.args = [python, "-m", "batchrunner.fakeserver", "--port", "0", *args]
        self.process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(self, timeout: float = 20.0) -> Self:
        """Start the process and wait for its ``listening on http://127.0.0.1:PORT`` line."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # stderr goes to a file, not a pipe: nobody drains a pipe during a long benchmark, and a full one
        # would block the server
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
        )
        line = self._first_line(self.process, timeout)
        match = READY_LINE.match(line.strip())
        if match is None:
            _, err = self._terminate()
            raise RuntimeError(f"the fake server did not start: first line {line!r}; stderr: {err.strip()}")
        self.port = int(match.group(1))
        return self

    @staticmethod
    def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return ""
        return process.stdout.readline()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, close the pipes; returns the exit code (0 for a clean shutdown)."""
        code, _ = self._terminate(timeout)
        return code

    def _terminate(self, timeout: float = 10.0) -> tuple[int, str]:
        """Stop the process (SIGTERM, then SIGKILL) and return its exit code and stderr."""
        process, stderr = self.process, self._stderr
        if process is None or stderr is None:
            return 0, ""
        self.process = self._stderr = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        with stderr:
            stderr.seek(0)
            return process.returncode, stderr.read()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
