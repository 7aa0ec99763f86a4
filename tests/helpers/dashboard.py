"""``batchrunner dashboard`` as a child process, and what a test reads from it.

- :class:`DashboardProcess`: ``python -m batchrunner dashboard --port 0 ARGS``; its URL is the first
  line of its stdout;
- :func:`watch_until`: the snapshots ``/ws`` pushes, until one satisfies a condition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp


class DashboardProcess:
    """The dashboard in a subprocess (it inherits the isolated environment); a context manager."""

    def __init__(
        self, workdir: Path, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None
    ) -> None:
        self._args = [sys.executable, "-m", "batchrunner", "dashboard", "--port", "0", *args]
        self._env = {**os.environ, **(env or {})}
        self._workdir = workdir
        self.url = ""

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            self._args,
            cwd=self._workdir,
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = self._first_line(20.0)
        assert self.url.startswith("http://127.0.0.1:"), self.url
        return self

    def _first_line(self, timeout: float) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise AssertionError(f"the dashboard printed no URL within {timeout} s:\n{err}")
        return box[0].strip()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM (the dashboard stops serving and exits 0), and reap; again is a no-op."""
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()

    def page(self, path: str) -> str:
        """The URL of ``path`` (``ws``, ``api/status``), the token's query kept."""
        base, _, query = self.url.partition("?")
        return base + path + ("?" + query if query else "")


async def watch_until(
    url: str, done: Callable[[dict[str, Any]], bool], *, within_s: float, raw: list[str] | None = None
) -> list[dict[str, Any]]:
    """The snapshots ``/ws`` at ``url`` pushes until ``done`` says yes (the last one included); each
    message's text also goes to ``raw``, when given."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while time.monotonic() < deadline:
            message = await ws.receive(timeout=max(deadline - time.monotonic(), 0.1))
            assert message.type == aiohttp.WSMsgType.TEXT, message
            if raw is not None:
                raw.append(message.data)
            seen.append(json.loads(message.data))
            if done(seen[-1]):
                return seen
    raise AssertionError(f"no snapshot was done within {within_s} s; the last: {seen[-1:] or 'none'}")
