"""``batchrunner cancel`` on a run with live provider batches, through the real CLI against the fake server:
the batches are cancelled at the provider, the lines they had answered are recorded (and kept), the lines
they did not run end cancelled; a batch that has not ended in time is left for ``batchrunner run``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

import pytest
from helpers.batches import batch_lines, serve_both
from helpers.database import query
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import write_lines
from helpers.running import cli, status_of

from batchrunner.store.store import Store

pytestmark = pytest.mark.slow  # provider batches that take seconds


def _submit_batches(tmp_path: Path, openai: int, anthropic: int) -> Path:
    manifest = write_lines(tmp_path / "jobs.jsonl", batch_lines(openai, anthropic))
    submitted = cli("run", str(manifest), "--mode", "batch", "--no-wait", "--no-progress")
    assert submitted.exit_code == 0, submitted.stderr
    return tmp_path / "batchrunner.db"


def test_cancel_cancels_the_batches_keeps_their_answers_and_cancels_the_rest(
    fake_server: StartFakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = serve_both(fake_server, monkeypatch, batch_seconds=10.0)
    db = _submit_batches(tmp_path, 20, 20)
    time.sleep(3.0)  # some lines of each batch are done, most not

    cancelled = cli("cancel", "--db", str(db))
    assert cancelled.exit_code == 0, cancelled.stderr
    assert "2 provider batch(es) cancelled" in cancelled.stderr
    assert "still cancelling" not in cancelled.stderr

    books = server.stats(prompts=False)
    answered = books["batch_answers"]
    assert 0 < answered < 40 and books["requests"] == 0  # nothing sent in real time
    assert f"recorded what they had answered: {answered} succeeded, 0 failed" in cancelled.stderr
    assert f"{40 - answered} job(s) cancelled" in cancelled.stderr
    states = dict(query(db, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert states == {"succeeded": answered, "cancelled": 40 - answered}
    assert query(db, "SELECT DISTINCT state FROM batches") == [("done",)]
    assert query(db, "SELECT count(*) FROM results") == [(answered,)]
    no_longer_held = "SELECT count(*) FROM jobs WHERE state = 'cancelled' AND batch_id IS NOT NULL"
    assert query(db, no_longer_held) == [(0,)]

    exported = cli("export", "--db", str(db), "--format", "csv", "-o", "-")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    kept = [row for row in rows if row["status"] == "succeeded"]
    assert len(kept) == answered and all(row["output"] and row["mode"] == "batch" for row in kept)
    assert {row["mode"] for row in rows if row["status"] == "cancelled"} == {""}
    status = status_of("--db", str(db))
    assert {b["remote_status"] for b in status["batches"]} <= {"cancelled", "ended"}
    assert status["states"]["batched"] == 0


def test_a_batch_still_cancelling_is_left_for_the_next_run(
    fake_server: StartFakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = serve_both(fake_server, monkeypatch, batch_seconds=60.0)  # a cancel takes 3 s to end
    db = _submit_batches(tmp_path, 10, 0)

    cancelled = cli("cancel", "--db", str(db), "--wait", "0.5")
    assert cancelled.exit_code == 0, cancelled.stderr
    assert "1 provider batches are still cancelling; `batchrunner run` records them" in cancelled.stderr
    assert status_of("--db", str(db))["states"]["batched"] == 10  # still the batch's

    picked_up = cli("run", "--db", str(db), "--poll-interval", "0.2", "--no-progress")
    assert picked_up.exit_code in (0, 3), picked_up.stderr
    books = server.stats(prompts=False)
    assert books["requests"] == 0  # the cancelled run sent nothing in real time
    states = dict(query(db, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert states.get("succeeded", 0) == books["batch_answers"]
    assert states.get("cancelled", 0) == 10 - books["batch_answers"] and "pending" not in states
    assert query(db, "SELECT DISTINCT state FROM batches") == [("done",)]


def test_a_batch_formed_but_never_sent_is_dropped_and_never_sent_later(
    fake_server: StartFakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = serve_both(fake_server, monkeypatch, batch_seconds=1.0)
    manifest = write_lines(tmp_path / "jobs.jsonl", batch_lines(6, 0))
    assert cli("submit", str(manifest)).exit_code == 0
    db = tmp_path / "batchrunner.db"
    asyncio.run(_form_unsent_batch(str(db)))  # as a run killed after committing the batch's row leaves it
    assert status_of("--db", str(db))["states"]["batched"] == 6

    cancelled = cli("cancel", "--db", str(db))
    assert cancelled.exit_code == 0, cancelled.stderr
    assert "1 provider batch(es) not sent yet dropped" in cancelled.stderr
    assert "6 job(s) cancelled" in cancelled.stderr
    again = cli("run", "--db", str(db), "--poll-interval", "0.2", "--no-progress")
    assert again.exit_code in (0, 3), again.stderr
    books = server.stats(prompts=False)
    assert books["batches"] == {} and books["batch_files"] == 0 and books["requests"] == 0
    assert query(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("cancelled", 6)]
    assert query(db, "SELECT state, error FROM batches") == [("done", "cancelled before it was sent")]


async def _form_unsent_batch(db: str) -> None:
    store = await Store.open(db, create=False)
    try:
        run = await store.find_run(None)
        [group] = await store.pending_groups(run.id, ["openai"])
        ids = [int(row[0]) for row in await store.pending_page(run.id, group, 0, 100, any_model=False)]
        provider, endpoint, model = group
        formed = await store.form_batch(
            run.id, local_id="brunsent", provider=provider, endpoint=endpoint, model=model, job_ids=ids,
            size_bytes=1,
        )  # fmt: skip
        assert formed is not None and formed.requests == 6
    finally:
        await store.close()
