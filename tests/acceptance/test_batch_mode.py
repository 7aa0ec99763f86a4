"""``run --mode batch`` against the fake server's batch APIs: killed at every step and resumed, expiry and
spill-over, the deadline (issue 12's acceptance; docs/batch.md).

Runners are subprocesses (``python -m batchrunner run``) killed with SIGKILL at the named crash points
(:mod:`batchrunner.engine.crashpoints`); the assertions are on the database, the export and the fake
server's batch books (``batch_*``: what it was given in provider batches, per prompt).
"""

from __future__ import annotations

import csv
import io
import json
import signal
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers.batches import batch_lines
from helpers.database import query
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import write_lines
from helpers.running import RunnerProcess, cli, wait_until
from helpers.store_fixtures import POSTGRES

from batchrunner.fakeserver.faults import parse_plan
from batchrunner.fakeserver.testing import FakeServerHandle
from batchrunner.models import Usage
from batchrunner.policy.pricing import BUILTIN_PRICES

pytestmark = pytest.mark.slow  # runner subprocesses, 20,000 jobs

HALF = 10_000


Serve = Callable[..., FakeServerHandle]


@pytest.fixture
def serve(fake_server: StartFakeServer, monkeypatch: pytest.MonkeyPatch) -> Serve:
    """Start the fake server with these settings and point both providers at it."""

    def start(**config: Any) -> FakeServerHandle:
        server = fake_server(**config)
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        return server

    return start


@pytest.fixture
def env(serve: Serve) -> Iterator[FakeServerHandle]:
    yield serve(batch_seconds=1.0)


def _run(tmp_path: Path, args: list[str], crash_at: str | None = None, name: str = "run") -> RunnerProcess:
    env = {"BATCHRUNNER_TEST_CRASH_AT": crash_at} if crash_at else None
    return RunnerProcess(tmp_path, args, env=env, name=name)


def test_killed_at_every_step_each_job_is_batched_once_and_costs_half(
    env: FakeServerHandle, tmp_path: Path
) -> None:
    manifest = write_lines(tmp_path / "big.jsonl", batch_lines(HALF, HALF))
    db = tmp_path / "batchrunner.db"
    args = [
        str(manifest),
        "--mode",
        "batch",
        "--batch-size",
        "5000",
        "--poll-interval",
        "0.2",
        "--no-progress",
    ]
    # the four steps where a crash leaves something the provider holds and we have not recorded
    for n, point in enumerate(["after-batch-row:2", "after-create:1", "after-upload:1", "while-polling:3"]):
        process = _run(tmp_path, args, crash_at=point, name=f"kill{n}")
        assert process.wait(120) == -9, process.stderr()
        if point.startswith("after-batch-row"):  # the second row committed, nothing sent yet
            assert query(db, "SELECT count(*), min(state), max(state) FROM batches") == [
                (2, "preparing", "preparing")
            ]
            assert env.stats()["batches"] == {}
    final = _run(tmp_path, args, name="final")
    assert final.wait(180) == 0, final.stderr()
    assert "found at the provider" in (tmp_path / "kill2.stderr").read_text() + final.stderr()

    books = env.stats(prompts=True)
    assert books["batches"] == {"anthropic": 2, "openai": 2}  # two chunks each, none made twice
    assert books["batch_files"] == 2  # the upload of the killed run was found again, not repeated
    assert books["batch_lines"] == 2 * HALF and books["batch_line_duplicates"] == 0
    assert set(books["batch_placements"].values()) == {1}  # every job put in a batch once
    assert books["requests"] == 0  # nothing was sent in real time

    exported = cli("export", "--db", str(db), "--format", "csv", "-o", "-")
    assert exported.exit_code == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 2 * HALF and len({row["custom_id"] for row in rows}) == 2 * HALF
    assert {row["status"] for row in rows} == {"succeeded"}
    assert query(db, "SELECT count(*) FROM batches WHERE state = 'done'") == [(4,)]
    lines = query(db, "SELECT j.custom_id, r.batch_line FROM results r JOIN jobs j ON j.id = r.job_id")
    for custom_id, line in lines[:: HALF // 5]:  # each result keeps the provider's line as received
        assert json.loads(line)["custom_id"].rsplit("-", 1)[1].isdigit(), custom_id

    # half the realtime price: the same jobs (a sample of each half) run in real time into another database
    sample = batch_lines(200, 200)
    realtime_db = tmp_path / "realtime.db"
    sample_file = write_lines(tmp_path / "sample.jsonl", sample)
    ran = cli("run", str(sample_file), "--db", str(realtime_db), "--no-progress")
    assert ran.exit_code == 0, ran.stderr
    batch_costs = dict(
        query(db, "SELECT j.custom_id, r.cost_usd FROM results r JOIN jobs j ON j.id = r.job_id")
    )
    realtime_costs = query(
        realtime_db, "SELECT j.custom_id, r.cost_usd, r.input_tokens, r.output_tokens, j.model "
        "FROM results r JOIN jobs j ON j.id = r.job_id"
    )  # fmt: skip
    assert len(realtime_costs) == 400
    for custom_id, cost, input_tokens, output_tokens, model in realtime_costs:
        listed = BUILTIN_PRICES.cost(model, Usage(input_tokens=input_tokens, output_tokens=output_tokens))
        assert listed is not None and cost == pytest.approx(float(listed))
        assert batch_costs[custom_id] == pytest.approx(cost / 2), custom_id
    total = sum(Decimal(str(cost)) for cost in batch_costs.values())
    assert total > 0


def test_an_expired_batch_spills_its_rest_to_real_time(serve: Serve, tmp_path: Path) -> None:
    server = serve(batch_seconds=1.0, batch_expire_fraction=0.4)
    manifest = write_lines(tmp_path / "exp.jsonl", batch_lines(100, 100))
    ran = cli("run", str(manifest), "--mode", "batch", "--poll-interval", "0.1", "--spill", "realtime",
              "--no-progress")  # fmt: skip
    assert ran.exit_code == 0, ran.stderr
    books = server.stats(prompts=False)
    assert books["batch_answers"] == 80  # 40% of each batch answered there
    assert books["answers_total"] == 120  # the other 60% in real time
    db = tmp_path / "batchrunner.db"
    served = query(db, "SELECT batch_id IS NOT NULL, count(*) FROM jobs WHERE state = 'succeeded' GROUP BY 1")
    assert sorted(served) == [(0, 120), (1, 80)]
    expired = query(db, "SELECT count(*) FROM attempts WHERE error_class = 'batch_expired'")
    assert expired == [(120,)]


def test_without_spill_expired_jobs_are_left_pending(serve: Serve, tmp_path: Path) -> None:
    server = serve(batch_seconds=0.5, batch_expire_fraction=0.5)
    manifest = write_lines(tmp_path / "left.jsonl", batch_lines(50, 0))
    ran = cli("run", str(manifest), "--mode", "batch", "--poll-interval", "0.1", "--no-progress")
    assert ran.exit_code == 0, ran.stderr
    assert "25 pending" in ran.stderr and "to resume" in ran.stderr
    assert server.stats()["requests"] == 0
    db = tmp_path / "batchrunner.db"
    assert query(db, "SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state") == [
        ("pending", 25), ("succeeded", 25)
    ]  # fmt: skip
    assert query(db, "SELECT min(attempts), max(attempts) FROM jobs WHERE state = 'pending'") == [(0, 0)]


def test_the_deadline_cancels_the_batches_and_spills_the_rest(serve: Serve, tmp_path: Path) -> None:
    server = serve(batch_seconds=30.0)
    manifest = write_lines(tmp_path / "late.jsonl", batch_lines(60, 60))
    ran = cli("run", str(manifest), "--mode", "batch", "--poll-interval", "0.2", "--deadline", "3s",
              "--no-progress")  # fmt: skip
    assert ran.exit_code == 0, ran.stderr
    assert "deadline passed" in ran.stderr
    books = server.stats(prompts=False)
    db = tmp_path / "batchrunner.db"
    served = dict(
        query(db, "SELECT batch_id IS NOT NULL, count(*) FROM jobs WHERE state = 'succeeded' GROUP BY 1")
    )
    assert served.get(1, 0) == books["batch_answers"]  # what the batches finished is kept
    assert served.get(0, 0) == books["answers_total"] == 120 - books["batch_answers"]  # the rest in real time
    assert query(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == [(120,)]
    assert json.loads(cli("status", "--json", "--db", str(db)).stdout)["states"]["succeeded"] == 120


def test_no_wait_submits_and_a_later_realtime_run_picks_the_batches_up(serve: Serve, tmp_path: Path) -> None:
    server = serve(batch_seconds=1.0)
    manifest = write_lines(tmp_path / "later.jsonl", batch_lines(30, 20))
    submitted = cli("run", str(manifest), "--mode", "batch", "--no-wait", "--no-progress")
    assert submitted.exit_code == 0, submitted.stderr
    assert "submitted: br" in submitted.stderr and "still running at the provider" in submitted.stderr
    db = tmp_path / "batchrunner.db"
    assert query(db, "SELECT state, count(*) FROM batches GROUP BY state") == [("submitted", 2)]
    picked_up = cli("run", "--poll-interval", "0.2", "--no-progress")  # realtime mode: waits for them
    assert picked_up.exit_code == 0, picked_up.stderr
    assert "50 succeeded" in picked_up.stderr
    books = server.stats(prompts=False)
    assert books["requests"] == 0 and books["batch_lines"] == 50 and books["batch_line_duplicates"] == 0


def test_ctrl_c_while_waiting_leaves_the_batches_running(serve: Serve, tmp_path: Path) -> None:
    server = serve(batch_seconds=4.0)
    manifest = write_lines(tmp_path / "wait.jsonl", batch_lines(20, 20))
    process = _run(tmp_path, [str(manifest), "--mode", "batch", "--poll-interval", "0.2", "--no-progress"])
    wait_until(lambda: process.stderr().count("submitted as") == 2, 30, "both batches submitted")
    process.signal(signal.SIGINT)
    assert process.wait(30) == 130
    assert "still running at the provider; to pick them up: batchrunner run" in process.stderr()
    db = tmp_path / "batchrunner.db"
    assert query(db, "SELECT count(*) FROM batches WHERE state = 'submitted'") == [(2,)]
    resumed = cli("run", "--mode", "batch", "--poll-interval", "0.2", "--no-progress")
    assert resumed.exit_code == 0, resumed.stderr
    assert query(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("succeeded", 40)]
    assert server.stats(prompts=False)["batches"] == {"anthropic": 1, "openai": 1}  # none made again


def test_a_server_without_a_batch_api_stops_the_run_and_leaves_the_jobs_pending(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve(batch_api_faults=parse_plan("*404"))  # every batch-API request: 404
    manifest = write_lines(tmp_path / "nobatch.jsonl", batch_lines(12, 0))
    ran = cli("run", str(manifest), "--mode", "batch", "--poll-interval", "0.1", "--no-progress")
    assert ran.exit_code == 3, ran.stderr
    assert "its batch API refused batch br" in ran.stderr and "12 job(s) are pending again" in ran.stderr
    db = tmp_path / "batchrunner.db"
    assert query(db, "SELECT state, attempts, batch_id IS NULL, count(*) FROM jobs GROUP BY 1, 2, 3") == [
        ("pending", 0, 1, 12)
    ]
    assert query(db, "SELECT state FROM batches") == [("failed",)]
    realtime = cli("run", "--no-progress")  # as the message says: nothing is stuck in the failed batch
    assert realtime.exit_code == 0, realtime.stderr
    assert server.stats(prompts=False)["answers_total"] == 12


@pytest.fixture(params=["sqlite", POSTGRES])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "shared.db")
    url: str = request.getfixturevalue("pg_database")
    return url


def test_runners_started_together_send_each_job_in_one_batch(
    serve: Serve, tmp_path: Path, shared_db: str
) -> None:
    server = serve(batch_seconds=1.0)
    manifest = write_lines(tmp_path / "together.jsonl", batch_lines(3000, 3000))
    submitted = cli("submit", str(manifest), "--db", shared_db)
    assert submitted.exit_code == 0, submitted.stderr
    args = [
        "--db",
        shared_db,
        "--mode",
        "batch",
        "--batch-size",
        "1000",
        "--poll-interval",
        "0.2",
        "--no-progress",
    ]
    runners = [_run(tmp_path, args, name=f"together{n}") for n in range(3)]
    for process in runners:
        assert process.wait(120) == 0, process.stderr()
    books = server.stats(prompts=True)
    assert books["batch_lines"] == 6000 and books["batch_line_duplicates"] == 0
    assert set(books["batch_placements"].values()) == {1}
    assert sum(books["batches"].values()) == 6 and books["requests"] == 0
    exported = cli("export", "--db", shared_db, "--format", "csv", "-o", "-")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 6000 and {row["status"] for row in rows} == {"succeeded"}
