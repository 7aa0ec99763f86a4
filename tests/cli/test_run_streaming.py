"""A streamed run through the real CLI, over both transports, against the fake server (docs/streaming.md).

Half the jobs are OpenAI chat completions and half Anthropic messages, all with ``"stream": true``; one of
each is cut mid-stream on its first attempt and one of each is rate-limited before its stream starts.
Every job must end answered once, with its time to first token in both exports and its raw events kept,
and every figure ``status`` prints must agree with the fake server's books.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers.fake_server_fixtures import StartFakeServer
from helpers.running import cli, status_of
from sqlalchemy import text

from batchrunner.providers.streaming import unpack_events
from batchrunner.store.store import Store

pytestmark = pytest.mark.slow  # whole runs with retries

JOBS = 10
FAULTS = {2: "truncate", 5: "429"}  # first attempt only, then the job is answered


def manifest(path: Path) -> Path:
    lines: list[dict[str, Any]] = []
    for i in range(JOBS):
        directive = f" [[fault:{FAULTS[i]}]]" if i in FAULTS else ""
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"oai {i}{directive}"}]}
        lines.append({"custom_id": f"oai-{i}", "method": "POST", "url": "/v1/chat/completions",
                      "body": {**body, "stream": True}})  # fmt: skip
        params = {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "stream": True,
                  "messages": [{"role": "user", "content": f"ant {i}{directive}"}]}  # fmt: skip
        lines.append({"custom_id": f"ant-{i}", "params": params})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        store = await Store.open(db, create=False)
        try:
            async with store.db.read() as conn:
                return [tuple(row) for row in (await conn.execute(text(sql))).all()]
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.parametrize("transport", ["sdk", "http"])
def test_a_streamed_run_is_answered_once_with_ttft_and_agrees_with_the_books(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    server = fake_server(latency_ms=30, event_gap_ms=2, cut_after_events=2, retry_after_s=0)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    db = str(tmp_path / "stream.db")
    ran = cli("run", str(manifest(tmp_path / "stream.jsonl")), "--db", db, "--no-progress",
              "--transport", transport)  # fmt: skip
    assert ran.exit_code == 0, ran.output

    books = server.stats(prompts=False)
    total = 2 * JOBS
    assert books["answers_total"] == total and books["duplicates"] == 0
    assert books["streams"] == total + 2  # every answer streamed, plus the two cut ones
    assert books["requests"] == total + 4 and books["by_status"].get("429") == 2

    status = status_of("--db", db)
    assert status["states"]["succeeded"] == total and status["attempts"] == books["requests"]
    assert status["tokens"] == books["tokens"]  # usage came through the streams
    assert status["possibly_billed"] == 2  # the two cut streams

    exported = cli("export", "--db", db, "--format", "csv", "-o", "-")
    assert exported.exit_code == 0, exported.output
    table = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(table) == total and all(float(row["ttft_ms"]) >= 30 for row in table)
    assert all(float(row["ttft_ms"]) <= float(row["latency_ms"]) for row in table)
    exported = cli("export", "--db", db, "--format", "jsonl", "-o", "-")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    for record in records:
        assert record["status"] == "succeeded" and record["ttft_ms"] >= 30
        response = record["response"]
        if record["provider"] == "openai":
            assert response["object"] == "chat.completion"
            assert response["choices"][0]["message"]["content"] == record["output"]
        else:
            assert response["type"] == "message" and response["content"][0]["text"] == record["output"]
    assert {record["attempts"] for record in records if record["custom_id"].endswith(("-2", "-5"))} == {2}

    kept = rows(db, "SELECT j.custom_id, r.stream_events FROM results r JOIN jobs j ON j.id = r.job_id")
    for custom_id, packed in kept:
        events = unpack_events(bytes(packed))
        last = events[-1] if custom_id.startswith("oai") else json.loads(events[-1])["type"]
        assert last in ("[DONE]", "message_stop"), custom_id
    cut = rows(db, "SELECT error_class, possibly_billed, ttft_ms, status_code FROM attempts "
                   "WHERE error_class IS NOT NULL ORDER BY error_class")  # fmt: skip
    assert sorted((c, bool(b), t) for c, b, t, _ in cut) == [
        ("rate_limited", False, None), ("rate_limited", False, None),
        ("transient", True, None), ("transient", True, None),
    ]  # fmt: skip
    answered = rows(db, "SELECT count(*) FROM attempts WHERE error_class IS NULL AND ttft_ms >= 30")
    assert answered == [(total,)]
