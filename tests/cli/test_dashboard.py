"""``batchrunner dashboard`` against real runs: the snapshots ``/ws`` pushes while a runner against the
fake server drains the run, the token rule, and no key in any byte it serves."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers.dashboard import DashboardProcess, watch_until
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import fake_lines, prompts, write_lines, write_manifest
from helpers.running import RunnerProcess, cli, run_args, settings_for, status_of, wait_until

from batchrunner.cli.dashboard import status_fields
from batchrunner.dashboard.server import start_dashboard

JOBS = 40
CANARY = "sk-canary-dashboard-7f3a9c1e5b"
"""The run's real key: the fake server checks it, and no byte the dashboard serves may hold it."""


def done(snapshot: dict[str, Any]) -> bool:
    return "states" in snapshot and snapshot["states"]["succeeded"] == JOBS


@pytest.mark.slow  # a run of a few seconds beside the dashboard, both as subprocesses
async def test_the_socket_shows_a_run_grow_to_its_total_and_serves_no_key(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_target: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    server = fake_server(latency_ms=250, api_key=CANARY, retry_after_s=0)
    db = db_target  # SQLite or PostgreSQL
    manifest = write_manifest(tmp_path / "dash.jsonl", prompts(JOBS, "d", faults={3: "429", 7: "500"}))
    # started before the run (before its database even exists), as a user may
    with DashboardProcess(tmp_path, ["--db", str(db)]) as dashboard:
        waiting = await watch_until(dashboard.page("ws"), lambda s: "waiting" in s, within_s=10)
        assert ("no database" if db.endswith(".db") else "no runs") in waiting[-1]["waiting"]
        runner = RunnerProcess(tmp_path, [*run_args(manifest, server), "--db", str(db), "--concurrency", "4"])
        raw: list[str] = []
        try:
            seen = await watch_until(dashboard.page("ws"), done, within_s=60, raw=raw)
            assert await asyncio.to_thread(runner.wait) == 0, runner.stderr()
        finally:
            runner.stop()
        counts = [s["states"]["succeeded"] for s in seen if "states" in s]
        assert counts == sorted(counts) and len(set(counts)) >= 3, counts  # it grew, a second at a time
        last = seen[-1]
        assert last["total"] == JOBS and last["run"] == "dash"
        assert sum(last["series"]["jobs_per_s"]) * last["series"]["bucket_s"] == pytest.approx(JOBS)
        assert any(p is not None for p in last["series"]["latency_ms"]["p95"])
        assert sum(last["series"]["rate_limited"]) == 1 and last["series"]["errors"]
        assert {e["error_class"] for e in last["latest_errors"]} == set(last["series"]["errors"])
        assert [r["name"] for r in last["runs"]] == ["dash"]

        async with aiohttp.ClientSession() as session:
            for path in ("", "static/app.js", "static/style.css", "api/status"):
                async with session.get(dashboard.page(path)) as response:
                    assert response.status == 200, path
                    raw.append(await response.text())
            async with session.get(dashboard.page("api/status")) as response:
                once = await response.json()
    # the same fields as status --json, and more beside them
    assert set(await asyncio.to_thread(status_of, "--db", str(db))) <= set(once)
    assert once["states"]["succeeded"] == JOBS and "outputs" not in once  # no content without --show-content
    served = "\n".join(raw)
    assert CANARY not in served and "sk-canary" not in served


async def test_the_token_guards_every_request_and_the_socket(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    manifest = write_manifest(tmp_path / "t.jsonl", prompts(3, "t"))
    assert (await asyncio.to_thread(cli, "submit", str(manifest), "--db", str(db))).exit_code == 0
    settings = settings_for(None, db)
    async with (
        start_dashboard(settings, port=0, token="s3cret", status_fields=status_fields) as url,
        aiohttp.ClientSession() as session,
    ):
        assert url.endswith("/?token=s3cret")
        base = url.partition("?")[0]
        for path in ("", "static/app.js", "api/status", "ws"):
            for query, expected in (("", 403), ("?token=wrong", 403), ("?token=s3cret", 200)):
                async with session.get(base + path + query) as response:
                    wanted = 400 if path == "ws" and expected == 200 else expected  # ws: no upgrade asked
                    assert response.status == wanted, (path, query)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(base + "ws?token=wrong")
        assert refused.value.status == 403
        async with session.ws_connect(base + "ws?token=s3cret") as ws:
            snapshot = json.loads((await ws.receive(timeout=10)).data)
        assert snapshot["total"] == 3 and snapshot["states"]["pending"] == 3
        async with session.get(base + "?token=s3cret") as response:  # the page's own links carry it
            assert 'src="/static/app.js?token=s3cret"' in await response.text()


def test_another_host_needs_a_token(tmp_path: Path) -> None:
    refused = cli("dashboard", "--host", "0.0.0.0", "--port", "0")
    assert refused.exit_code == 2 and "--token" in refused.stderr


@pytest.mark.parametrize("show", [False, True])
def test_answers_are_shown_only_with_show_content(tmp_path: Path, show: bool) -> None:
    db = tmp_path / "c.db"
    ran = cli("run", str(write_lines(tmp_path / "c.jsonl", fake_lines(3))), "--db", str(db), "--no-progress")
    assert ran.exit_code == 0, ran.output
    exported = cli("export", "--db", str(db), "--format", "jsonl", "-o", "-")
    answers = [json.loads(line)["output"] for line in exported.stdout.splitlines()]

    async def served() -> str:
        settings = settings_for(None, db)
        async with (
            start_dashboard(settings, port=0, show_content=show, status_fields=status_fields) as url,
            aiohttp.ClientSession() as session,
            session.get(url + "api/status") as response,
        ):
            return await response.text()

    document = asyncio.run(served())
    assert len(answers) == 3 and all(answer and (answer in document) == show for answer in answers)
    assert ("outputs" in json.loads(document)) == show


def test_run_dashboard_serves_the_run_beside_it(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fake_server(latency_ms=150)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    manifest = write_manifest(tmp_path / "beside.jsonl", prompts(30, "beside"))
    process = RunnerProcess(
        tmp_path, [str(manifest), "--dashboard", "--dashboard-port", "0", "--concurrency", "4"]
    )
    try:
        wait_until(lambda: "dashboard: http://127.0.0.1:" in process.stderr(), 30, "the dashboard's URL")
        url = process.stderr().split("dashboard: ", 1)[1].split()[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        seen: list[dict[str, Any]] = []

        def snapshot_of_the_run() -> bool:  # the dashboard may start before the run's database is made
            with opener.open(url.rstrip("/") + "/api/status", timeout=10) as answer:
                seen.append(json.loads(answer.read()))
            return "run" in seen[-1]

        wait_until(snapshot_of_the_run, 30, "a snapshot of the run")
        assert seen[-1]["run"] == "beside" and seen[-1]["total"] == 30
        assert process.wait(60) == 0, process.stderr()
    finally:
        process.stop()
    assert server.stats()["answers_total"] == 30
