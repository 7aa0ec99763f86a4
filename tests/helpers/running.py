"""Running batchrunner from a test, as a user would.

- :func:`cli`: ``batchrunner ARGS`` in-process with click's runner;
- :func:`subprocess_cli`: ``python -m batchrunner ARGS`` as a child process, waited for;
- :class:`RunnerProcess`: ``batchrunner run`` as a child process left running (for signals and kills),
  its output captured to files; :func:`run_args` builds its arguments against a fake server;
- :func:`settings_for`: the settings ``batchrunner run`` would resolve, for an in-process ``api.run``;
- :func:`wait_until`: poll a condition, failing the test after a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from click.testing import CliRunner, Result

from batchrunner.cli import main
from batchrunner.config import Settings, load_settings
from batchrunner.fakeserver.testing import FakeServerHandle


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """``batchrunner ARGS`` in-process."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def subprocess_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m batchrunner ARGS`` as a child process (it inherits the isolated environment)."""
    return subprocess.run(
        [sys.executable, "-m", "batchrunner", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_of(*args: str) -> dict[str, Any]:
    result = cli("status", "--json", *args)
    assert result.exit_code == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def settings_for(base_url: str | None, db: Path, **flags: Any) -> Settings:
    """Settings as ``batchrunner run --base-url URL --db DB --FLAG ...`` resolves them (the real path)."""
    given = {"db": str(db), "base_url": base_url, **flags}
    return load_settings(flags=given, env=os.environ, cwd=Path.cwd())


class RunnerProcess:
    """``python -m batchrunner run ARGS`` in a subprocess; stdout and stderr go to files in ``workdir``."""

    def __init__(
        self, workdir: Path, args: Iterable[str], *, env: Mapping[str, str] | None = None, name: str = "run"
    ) -> None:
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self._out: IO[bytes] = self.stdout_path.open("wb")
        self._err: IO[bytes] = self.stderr_path.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchrunner", "run", *args],
            stdout=self._out,
            stderr=self._err,
            env=full_env,
            cwd=workdir,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the exit (killing it after ``timeout``) and return the exit code (``-9``: SIGKILL)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the runner did not exit within {timeout} s:\n{self.stderr()}") from None
        finally:
            self._out.close()
            self._err.close()
        return code

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> int:
        """SIGKILL and reap (so that its pid is gone, as after a real crash)."""
        self.process.send_signal(signal.SIGKILL)
        return self.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Test cleanup: make sure the process is gone (SIGCONT first, in case it was stopped)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.wait()


def run_args(manifest: Path | None, server: FakeServerHandle, *extra: str) -> list[str]:
    """``[FILE] --base-url URL --no-progress ...``; without ``manifest``: resume the latest run."""
    head = [str(manifest)] if manifest is not None else []
    return [*head, "--base-url", server.openai_base_url, "--no-progress", *extra]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
