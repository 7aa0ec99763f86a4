"""What ``batchrunner run -v`` / ``-vv`` say about errors, as a subprocess (the CLI's own logging setup)
against a closed port on 127.0.0.1 (every attempt a connection error)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from helpers.manifests import prompts, write_manifest
from helpers.running import RunnerProcess

pytestmark = pytest.mark.slow  # the CLI as a subprocess

JOBS = 12
ATTEMPTS = 2


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: a connection is refused


def run_verbose(tmp_path: Path, flag: str) -> str:
    manifest = write_manifest(tmp_path / "dead.jsonl", prompts(JOBS, "dead"))
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    args = [str(manifest), "--base-url", base_url, "--no-progress", "--max-attempts", str(ATTEMPTS), flag]
    process = RunnerProcess(tmp_path, args, name=flag.strip("-"))
    try:
        assert process.wait(60) == 1, process.stderr()  # every job failed: attempts exhausted
    finally:
        process.stop()
    stderr = process.stderr()
    assert "sk-test-dummy" not in stderr and "authorization" not in stderr.lower()
    return stderr.replace(base_url, "URL")


def test_v_logs_each_kind_of_error_once_then_a_count(tmp_path: Path) -> None:
    stderr = run_verbose(tmp_path, "-v")
    lines = [line for line in stderr.splitlines() if "batchrunner.engine.errorlog" in line]
    logger = "INFO batchrunner.engine.errorlog"
    first = f"{logger}: openai: connection error from URL/: connection failed ("
    # the connect failure as the transport names it: aiohttp (http, the default) or httpx (sdk)
    assert lines[0].startswith((first + "ClientConnectorError: ", first + "ConnectError: ")), stderr
    assert lines[-1].startswith(
        f"{logger}: openai: connection error x{JOBS * ATTEMPTS} from URL/: connection failed"
    ), stderr
    assert len(lines) <= 3  # once, maybe a count after 10 s, the count at the end: not one per attempt
    assert "DEBUG" not in stderr


def test_vv_logs_one_line_per_attempt(tmp_path: Path) -> None:
    stderr = run_verbose(tmp_path, "-vv")
    attempt_line = re.compile(
        r"^DEBUG batchrunner\.engine\.errorlog: job (dead-\d{3}) attempt (\d): "
        r"no status, \d+ ms, transient -> (\w+)$"
    )
    seen = [m.groups() for line in stderr.splitlines() if (m := attempt_line.match(line))]
    assert len(seen) == JOBS * ATTEMPTS, stderr
    assert sorted(seen) == sorted(
        (f"dead-{i:03d}", str(n), "pending" if n < ATTEMPTS else "failed")
        for i in range(JOBS)
        for n in range(1, ATTEMPTS + 1)
    )
    assert "INFO batchrunner.engine.errorlog: openai: connection error from URL/" in stderr
