"""The public Python API: ``batchrunner.run`` / ``arun`` on files and job dicts, ``results``, the README's
example, and that it reads the environment as the CLI does. Against the fake server on 127.0.0.1 (the real
OpenAI wire format) and real SQLite files; assertions on the server's books and the database's rows."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.fake_server_fixtures import StartFakeServer

import batchrunner
from batchrunner import api

README = Path(__file__).resolve().parents[2] / "README.md"


def jobs_dicts(n: int, tag: str = "q") -> list[dict[str, object]]:
    return [{"id": f"{tag}{i}", "prompt": f"{tag} prompt {i}", "model": "gpt-4o-mini"} for i in range(n)]


def test_run_job_dicts_reads_the_environment_and_results_follow_the_given_order(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fake_server(latency_ms=1)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)  # as the CLI would read it
    jobs = list(reversed(jobs_dicts(20)))  # not in id order: results keep the order given
    db = str(tmp_path / "api.db")

    report = batchrunner.run(jobs, run="dicts", db=db)

    assert report.exit_code == 0 and report.stats.by_state["succeeded"] == 20
    books = server.stats()
    assert books["requests"] == 20 and books["answers_total"] == 20
    results = list(batchrunner.results("dicts", db=db))
    assert [r["custom_id"] for r in results] == [j["id"] for j in jobs]
    assert all(r["status"] == "succeeded" and r["output"] for r in results)
    assert sum(r["usage"]["output_tokens"] for r in results) == books["tokens"]["output"]

    again = batchrunner.run(jobs, run="dicts", db=db)  # resumes: nothing answered is sent again
    assert again.exit_code == 0 and server.stats()["requests"] == 20


def test_the_key_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(batchrunner.ConfigError, match="OPENAI_API_KEY"):
        batchrunner.run(jobs_dicts(2), run="nokey", db=str(tmp_path / "nokey.db"))


async def test_arun_a_file_then_aresults_inside_an_event_loop(tmp_path: Path) -> None:
    manifest = tmp_path / "small.jsonl"
    manifest.write_text('{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two"}\n', encoding="utf-8")
    db = str(tmp_path / "file.db")

    report = await batchrunner.arun(manifest, provider="fake", db=db)

    assert report.exit_code == 0 and report.stats.by_state["succeeded"] == 2
    assert [r["custom_id"] async for r in batchrunner.aresults("small", db=db)] == ["a", "b"]
    status = await api.status(settings=api.settings(db=db))
    assert status.stats.total == 2 and status.remaining == 0


def test_a_bad_job_dict_names_it_and_queues_nothing(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    jobs = [{"id": "ok", "prompt": "fine"}, {"id": "bad", "prompt": 5}, "not a dict"]
    with pytest.raises(batchrunner.ManifestError) as raised:
        batchrunner.run(jobs, run="bad", provider="fake", db=str(db))  # type: ignore[arg-type]  # on purpose
    message = str(raised.value)
    assert re.search(r"jobs:2: prompt: ", message), message
    assert "jobs:3: line: expected a mapping" in message, message
    assert not db.exists()  # the database this call created is gone again: nothing half-written


def test_job_dicts_need_a_run_name_and_options_or_settings_not_both(tmp_path: Path) -> None:
    with pytest.raises(batchrunner.UsageError, match="name the run"):
        batchrunner.run(jobs_dicts(1), provider="fake", db=str(tmp_path / "x.db"))
    with pytest.raises(batchrunner.UsageError, match="not both"):
        batchrunner.run(jobs_dicts(1), run="x", settings=api.settings(), provider="fake")


@pytest.mark.slow  # a subprocess running 50 jobs
def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- python-example -->\n```python\n(.*?)```\n<!-- /python-example -->", text, re.S)
    assert block, "README.md has no python-example block"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 12
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0 50 succeeded"
    assert [line.split()[0] for line in lines[1:]] == [f"q{n}" for n in range(50)]
    conn = sqlite3.connect(tmp_path / "sums.db")
    try:
        counts = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        results = conn.execute("SELECT count(*) FROM results").fetchone()[0]
    finally:
        conn.close()
    assert counts == {"succeeded": 50} and results == 50


@pytest.mark.slow  # a subprocess
def test_help_shows_the_public_api() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import batchrunner; help(batchrunner)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PAGER": "cat", "MANPAGER": "cat"},
    )
    assert done.returncode == 0, done.stderr
    for name in ("run(jobs", "arun(jobs", "results(run", "aresults(run", "settings(", "BatchrunnerError"):
        assert name in done.stdout, name
    assert "batchrunner.run(jobs, run=" in done.stdout  # the module docstring's example
