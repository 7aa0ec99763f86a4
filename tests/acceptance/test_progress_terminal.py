"""The live progress line in a real terminal: tmux runs ``batchrunner run`` in an 80-column pane.

What a user sees there: one line redrawn in place that fits the width (a line that wraps leaves a new row
on every redraw), the requests in flight while the first answers are still on their way, and a warning
printed meanwhile on a row of its own. ``.ci/run`` installs tmux; without CI the test skips without it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import prompts, write_manifest
from helpers.running import wait_until

pytestmark = pytest.mark.slow  # the CLI in a tmux pane

WIDTH = 80


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[str]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed (.ci/run installs it)")
        pytest.skip("tmux is not installed")
    session = f"br-{os.getpid()}"
    socket = str(tmp_path / "tmux.sock")
    yield f"{socket}:{session}"
    subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)


def screen(target: str) -> list[str]:
    socket, session = target.split(":")
    shown = subprocess.run(
        ["tmux", "-S", socket, "capture-pane", "-p", "-t", session], capture_output=True, text=True
    )
    return shown.stdout.splitlines()


def test_the_live_line_fits_80_columns_shows_calls_in_flight_and_lets_warnings_through(
    tmux: str, fake_server: StartFakeServer, tmp_path: Path
) -> None:
    server = fake_server(latency_ms=2500)
    manifest = write_manifest(tmp_path / "slow.jsonl", prompts(8, "slow"), model="my-unpriced-model")
    command = shlex.join(
        [
            sys.executable,
            "-m",
            "batchrunner",
            "run",
            str(manifest),
            "--concurrency",
            "4",
            "--base-url",
            server.openai_base_url,
        ]
    )
    socket, session = tmux.split(":")
    env = {**os.environ, "TERM": "xterm"}
    subprocess.run(
        [
            "tmux",
            "-S",
            socket,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            str(WIDTH),
            "-y",
            "24",
            f"{command}; echo EXIT=$?; sleep 30",
        ],
        check=True,
        env=env,
        cwd=tmp_path,
    )

    # before any answer: the line says what is going on, not "0/8 0.0 jobs/s" alone
    wait_until(lambda: any("in flight 4" in row for row in screen(tmux)), 20, "calls in flight shown")
    early = [row for row in screen(tmux) if "jobs/s" in row]
    assert len(early) == 1 and early[0].startswith("0/8 (0.0%)  in flight 4"), screen(tmux)

    wait_until(lambda: any(row.startswith("EXIT=") for row in screen(tmux)), 30, "the run to end")
    rows = [row for row in screen(tmux) if row.strip()]
    assert "EXIT=0" in rows
    warning = [n for n, row in enumerate(rows) if "no price for model 'my-unpriced-model'" in row]
    assert len(warning) == 1 and rows[warning[0]].startswith("WARNING "), rows  # on its own row
    progress = [row for row in rows if "jobs/s" in row]
    assert len(progress) == 1, rows  # redrawn in place: no row left behind by a wrapped line
    assert progress[0].startswith("8/8 (100.0%)") and len(progress[0]) < WIDTH
    assert any(row.startswith("run 'slow': 8 succeeded, 0 failed") for row in rows), rows
