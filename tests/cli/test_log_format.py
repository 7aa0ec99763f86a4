"""``--log-format json``: every stderr line of a real run is one JSON object, the attempts agree with the
fake server's books, and the key never appears, whatever the messages say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import prompts, write_manifest

CANARY = "sk-canary-logs-5f1e2d3c4b5a"


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchrunner", *args],
        cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_run_logs_one_json_object_a_line_and_never_the_key(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    server = fake_server(retry_after_s=0)
    jobs = prompts(8, "logs", faults={1: "500", 3: "429,500", 5: "*400"})
    manifest = write_manifest(tmp_path / "logs.jsonl", jobs)
    env = {"OPENAI_API_KEY": CANARY, "BATCHRUNNER_LOG_FORMAT": "json"}
    done = _run("run", str(manifest), "--base-url", server.openai_base_url, "-vv", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr  # logs-005 fails
    records = [json.loads(line) for line in done.stderr.splitlines()]  # every line parses
    assert CANARY not in done.stderr and CANARY not in done.stdout
    attempts = [r for r in records if r["event"] == "attempt"]
    assert len(attempts) == server.stats()["requests"] == 8 + 1 + 2  # one line per request sent
    by_job = {(r["job"], r["attempt"]): r for r in attempts}
    assert (by_job["logs-003", 1]["status"], by_job["logs-003", 1]["error_class"]) == (429, "rate_limited")
    assert by_job["logs-003", 3]["state"] == "succeeded" and by_job["logs-003", 3]["output_tokens"] > 0
    assert by_job["logs-005", 1]["state"] == "failed" and all(r["run"] == "logs" for r in attempts)
    for record in records:
        assert {"ts", "level", "event", "logger", "message"} <= record.keys()
    summary = [r for r in records if r["event"] == "summary"]
    assert summary[0]["state"] == {"succeeded": 7, "failed": 1}

    # the default level: no attempt lines, the summary still there; and an error as an object too
    quiet = _run("status", "--run", "missing", cwd=tmp_path, env=env)
    [error] = [json.loads(line) for line in quiet.stderr.splitlines()]
    assert (error["event"], error["level"], quiet.returncode) == ("error", "error", 2)
    again = _run("run", "--log-format", "json", cwd=tmp_path, env={**env, "BATCHRUNNER_LOG_FORMAT": "text"})
    assert {json.loads(line)["event"] for line in again.stderr.splitlines()} <= {"summary", "notice", "log"}
