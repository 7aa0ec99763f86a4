"""A provider defined in the config file serves what its kind serves: ``claude-proxy`` of kind anthropic
runs Anthropic Message Batches lines (it was refused as if it were OpenAI-compatible)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner
from helpers.fake_server_fixtures import StartFakeServer

from batchrunner.cli import main

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_a_configured_anthropic_kind_runs_anthropic_lines(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    server = fake_server(latency_ms=1)
    (tmp_path / "batchrunner.toml").write_text(
        f'[providers.claude-proxy]\nkind = "anthropic"\nbase_url = "{server.base_url}"\n'
        'api_key = "${PROXY_KEY:-sk-proxy-test}"\n',
        encoding="utf-8",
    )
    manifest = tmp_path / "claude.jsonl"
    manifest.write_text((JOBS / "anthropic-batch.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    lines = sum(1 for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip())

    done = CliRunner().invoke(main, ["run", str(manifest), "--provider", "claude-proxy", "--no-progress"])

    assert done.exit_code == 0, done.output
    books = server.stats()
    assert books["by_route"] == {"/v1/messages": lines} and books["answers_total"] == lines
    conn = sqlite3.connect(tmp_path / "batchrunner.db")
    try:
        rows = conn.execute("SELECT provider, state, count(*) FROM jobs GROUP BY provider, state").fetchall()
    finally:
        conn.close()
    assert rows == [("claude-proxy", "succeeded", lines)]
