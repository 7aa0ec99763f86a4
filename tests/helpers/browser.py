"""A real headless Chromium driven over the Chrome DevTools Protocol, with aiohttp's WebSocket client.

No browser-automation dependency: :class:`Browser` starts Debian's ``chromium`` with a debugging port,
opens the page target's WebSocket, and sends the few commands a test needs (navigate, evaluate a script,
take a screenshot). :func:`chromium_or_skip` finds the browser, skipping without one, except under CI
(``CI`` set), where a missing browser fails the test instead (``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import pytest

LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_or_skip() -> str:
    """The chromium executable; a skip without one (a failure under CI, which installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("needs chromium (apt-get install -y chromium)")
    return found


class Browser:
    """One headless Chromium with one page; ``async with Browser(path) as page: await page.goto(url)``."""

    def __init__(self, executable: str, *, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self._args = [
            executable,
            "--headless=new",
            "--no-sandbox",  # as root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--user-data-dir={self._profile.name}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self._ids = itertools.count(1)
        self.console: list[str] = []
        """What the page logged (console calls, exceptions, browser log entries)."""

    async def __aenter__(self) -> Self:
        browser_ws = await asyncio.to_thread(self._launch, 30.0)
        port = int(browser_ws.split(":")[2].split("/")[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        return self

    def _launch(self, timeout: float) -> str:
        """Start chromium; the browser's DevTools WebSocket URL, from its stderr."""
        self._process = subprocess.Popen(
            self._args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert self._process.stderr is not None
        deadline = time.monotonic() + timeout
        for line in self._process.stderr:
            if found := LISTENING.search(line):
                return found.group(1)
            if time.monotonic() > deadline:
                break
        raise AssertionError("chromium did not open its debugging port")

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._ws.close()
        await self._session.close()
        self._process.terminate()
        try:
            await asyncio.to_thread(self._process.wait, 10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            await asyncio.to_thread(self._process.wait)
        assert self._process.stderr is not None
        self._process.stderr.close()
        self._profile.cleanup()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (the events read meanwhile go to :attr:`console`)."""
        number = next(self._ids)
        await self._ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads((await asyncio.wait_for(self._ws.receive(), 30.0)).data)
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif event.get("method") == "Runtime.exceptionThrown":
            self.console.append(json.dumps(params["exceptionDetails"])[:500])
        elif event.get("method") == "Log.entryAdded":
            self.console.append(f"{params['entry']['level']}: {params['entry']['text']}")

    async def goto(self, url: str) -> None:
        """Open ``url`` and wait for the page to have loaded."""
        await self.send("Page.navigate", url=url)
        await self.wait_for(
            "location.href !== 'about:blank' && document.readyState === 'complete'", 15, "load"
        )

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a script run in the page."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within_s: float, what: str) -> Any:
        """Poll a script until it returns something truthy; that value."""
        deadline = time.monotonic() + within_s
        while not (value := await self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {within_s} s; the page's console: {self.console}")
            await asyncio.sleep(0.2)
        return value

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
