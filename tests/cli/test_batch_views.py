"""Seeing provider batches: ``status`` (text and ``--json``) lists them and the share paid at batch price,
and the exports say what served each job (``mode`` in CSV, ``served_by`` in JSONL), through the real CLI
against the fake server's batch APIs (issue 12, docs/batch.md).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers.batches import batch_lines, serve_both
from helpers.database import query
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import write_lines
from helpers.running import cli, status_of

pytestmark = pytest.mark.slow  # provider batches that take a second or two


def _csv(db: Path) -> list[dict[str, str]]:
    exported = cli("export", "--db", str(db), "--format", "csv", "-o", "-")
    assert exported.exit_code == 0, exported.stderr
    return list(csv.DictReader(io.StringIO(exported.stdout)))


def _jsonl(db: Path) -> list[dict[str, Any]]:
    exported = cli("export", "--db", str(db), "--format", "jsonl", "-o", "-")
    assert exported.exit_code == 0, exported.stderr
    return [json.loads(line) for line in exported.stdout.splitlines()]


def test_status_shows_live_batches_apart_from_requests_in_flight(
    fake_server: StartFakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = serve_both(fake_server, monkeypatch, batch_seconds=1.0)
    manifest = write_lines(tmp_path / "jobs.jsonl", batch_lines(12, 8))
    db = tmp_path / "batchrunner.db"
    submitted = cli("run", str(manifest), "--mode", "batch", "--no-wait", "--no-progress")
    assert submitted.exit_code == 0, submitted.stderr
    assert server.stats()["batches"] == {"anthropic": 1, "openai": 1}

    held = status_of("--db", str(db))
    assert held["states"]["batched"] == 20 and held["states"]["running"] == 0
    remote = dict(query(db, "SELECT local_id, remote_id FROM batches"))
    by_local = {batch["local_id"]: batch for batch in held["batches"]}
    assert {local: batch["remote_id"] for local, batch in by_local.items()} == remote
    assert sorted((b["provider"], b["model"], b["requests"], b["state"]) for b in held["batches"]) == [
        ("anthropic", None, 8, "submitted"),
        ("openai", "gpt-4o-mini", 12, "submitted"),
    ]
    assert held["batch_price"] == {
        "results": 0, "cost_usd": 0.0, "all_results": 0, "all_cost_usd": 0.0, "cost_share": None
    }  # fmt: skip
    text = cli("status", "--db", str(db)).stdout
    assert "in provider batches 20" in text and "2 provider batch(es), 2 live" in text
    assert all(remote_id in text for remote_id in remote.values())
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("  runner"))
    assert {row["mode"] for row in _csv(db)} == {""}  # nothing answered yet

    picked_up = cli("run", "--db", str(db), "--poll-interval", "0.2", "--no-progress")
    assert picked_up.exit_code == 0, picked_up.stderr
    done = status_of("--db", str(db))
    assert done["states"]["succeeded"] == 20 and done["states"]["batched"] == 0
    assert {(b["state"], b["succeeded"]) for b in done["batches"]} == {("done", 12), ("done", 8)}
    price = done["batch_price"]
    assert price["results"] == price["all_results"] == 20 and price["cost_share"] == 1.0
    assert price["cost_usd"] == pytest.approx(done["cost_usd"])
    text = cli("status", "--db", str(db)).stdout
    assert "2 provider batch(es), 0 live" in text and "batch price  20 of 20 result(s)" in text


def test_exports_say_which_mode_served_each_job(
    fake_server: StartFakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = serve_both(fake_server, monkeypatch, batch_seconds=0.5, batch_expire_fraction=0.5)
    manifest = write_lines(tmp_path / "jobs.jsonl", batch_lines(20, 20))
    db = tmp_path / "batchrunner.db"
    ran = cli("run", str(manifest), "--mode", "batch", "--poll-interval", "0.1", "--spill", "realtime",
              "--no-progress")  # fmt: skip
    assert ran.exit_code == 0, ran.stderr
    books = server.stats(prompts=False)
    assert books["batch_answers"] == 20 and books["answers_total"] == 20  # half each way

    rows = _csv(db)
    header = list(rows[0])
    assert header.index("mode") == header.index("attempts") + 1
    modes = {row["custom_id"]: row["mode"] for row in rows}
    assert sorted(modes.values()).count("batch") == books["batch_answers"]
    assert sorted(modes.values()).count("realtime") == books["answers_total"]
    batched = {str(c) for (c,) in query(db, "SELECT custom_id FROM jobs WHERE batch_id IS NOT NULL")}
    assert {c for c, mode in modes.items() if mode == "batch"} == batched
    records = _jsonl(db)
    assert {r["custom_id"]: r["served_by"] for r in records} == modes
    assert {r["status"] for r in records} == {"succeeded"}
    # the same columns whatever served a job: each has its output, usage and cost
    assert all(row["output"] and row["cost_usd"] and row["input_tokens"] for row in rows)

    price = status_of("--db", str(db))["batch_price"]
    batch_cost = sum(float(r["cost_usd"]) for r in rows if r["mode"] == "batch")
    all_cost = sum(float(r["cost_usd"]) for r in rows)
    assert price["results"] == 20 and price["all_results"] == 40
    assert price["cost_usd"] == pytest.approx(batch_cost) and price["all_cost_usd"] == pytest.approx(all_cost)
    assert price["cost_share"] == pytest.approx(batch_cost / all_cost, abs=1e-4)
    assert batch_cost < all_cost / 2  # the same jobs at half the price
