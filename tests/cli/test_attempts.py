"""``batchrunner attempts``: a job's history and the latest failures, against the fake server's books."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import prompts, write_manifest
from helpers.running import cli

CANARY = "sk-canary-attempts-0123456789"


def test_what_happened_to_a_job_and_the_latest_failures(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fake_server(retry_after_s=0)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    jobs = prompts(6, "hist", faults={2: "500,429", 4: "*400"})
    ran = cli("run", str(write_manifest(tmp_path / "h.jsonl", jobs)), "--base-url", server.openai_base_url,
              "--no-progress")  # fmt: skip
    assert ran.exit_code == 1, ran.stderr  # hist-004 fails
    books = server.stats()
    assert books["attempts"][jobs["hist-002"]] == 3

    history = cli("attempts", "--job", "hist-002", "--json")
    assert history.exit_code == 0, history.stderr
    records = [json.loads(line) for line in history.stdout.splitlines()]
    # newest first: the answer, then the 429, then the 500, as the server was asked
    assert [(r["attempt"], r["status"], r["error_class"]) for r in records] == [
        (3, 200, None), (2, 429, "rate_limited"), (1, 500, "transient")
    ]  # fmt: skip
    assert records[0]["output_tokens"] > 0 and records[0]["request_id"]

    failed = cli("attempts", "--failed", "--json", "-n", "50")
    statuses = sorted(json.loads(line)["status"] for line in failed.stdout.splitlines())
    assert statuses == [400, 429, 500]  # the 400 is permanent: one attempt, then the job failed
    assert sum(books["by_status"].get(code, 0) for code in ("400", "429", "500")) == 3

    text = cli("attempts", "-n", "3")
    assert text.exit_code == 0 and max(len(line) for line in text.stdout.splitlines()) <= 80
    assert "hist-005 #1" in text.stdout
    for output in (history.stdout, failed.stdout, text.stdout):
        assert CANARY not in output

    missing = cli("attempts", "--job", "nope")
    assert missing.exit_code == 2 and "has no job 'nope'" in missing.stderr
