"""The foundation issue's acceptance, end to end: ``submit``, ``runs``, ``status``, ``retry``, ``cancel``.

Everything goes through the real CLI, in-process with click's runner and as a subprocess, into real
SQLite files under tmp_path; the assertions are on rows (read back with ``sqlite3``), files and exit
codes. The storage-fault tests mount tiny tmpfs filesystems and so need root, as CI and the dev machines
have (tests/test_export.py does the same).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers.tmpfs import remount_read_only, tmpfs

from batchrunner.cli import main
from batchrunner.store.store import Store

JOBS = Path(__file__).resolve().parents[2] / "jobs"
MIB = 1024 * 1024


# --- helpers ----------------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """``batchrunner ARGS`` in-process."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def subprocess_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m batchrunner ARGS`` as a child process (it inherits the isolated environment)."""
    return subprocess.run(
        [sys.executable, "-m", "batchrunner", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(db: Path, table: str = "jobs") -> int:
    if not db.exists():
        return 0
    [(n,)] = query(db, f"SELECT count(*) FROM {table}")
    return int(n)


def write_lines(path: Path, lines: Sequence[bytes | str | dict[str, Any]], end: bytes = b"\n") -> Path:
    """A manifest of these lines (dicts as JSON, str as UTF-8, bytes as they are), each ended by ``end``."""
    raw = [
        line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode()
        for line in lines
    ]
    path.write_bytes(b"".join(line + end for line in raw))
    return path


def prompts(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [{"id": f"p{i}", "prompt": f"Say {i}", "provider": "fake"} for i in range(start, start + n)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The database the autouse fixture points BATCHRUNNER_DB at."""
    return tmp_path / "batchrunner.db"


# --- the example manifests ----------------------------------------------------------------------------


def _expected_rows(name: str) -> set[tuple[str, str, str]]:
    """(provider, endpoint, model) of each line of an example, read straight from the file."""
    rows = set()
    for line in (JOBS / name).read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if "params" in obj:
            rows.add(("anthropic", "/v1/messages", obj["params"]["model"]))
        elif "url" in obj:
            rows.add(("openai", obj["url"], obj["body"]["model"]))
        else:  # simple lines, submitted with --provider fake
            rows.add((obj.get("provider", "fake"), "/v1/chat/completions", obj.get("model", "fake-model")))
    return rows


@pytest.mark.parametrize(
    ("name", "flags", "formats"),
    [
        ("simple.jsonl", ["--provider", "fake"], {"simple"}),
        ("openai-batch.jsonl", [], {"openai-batch"}),
        ("anthropic-batch.jsonl", [], {"anthropic-batch"}),
    ],
)
def test_each_example_is_queued_with_its_provider_endpoint_and_model(
    tmp_path: Path, db: Path, name: str, flags: list[str], formats: set[str]
) -> None:
    source = shutil.copy(JOBS / name, tmp_path / name)
    lines = len(Path(source).read_text(encoding="utf-8").splitlines())
    result = cli("submit", str(source), *flags)
    assert result.exit_code == 0, result.stderr
    assert f"{lines} job(s) queued, 0 already present" in result.stderr
    assert count(db) == lines and count(db, "runs") == 1
    assert query(db, "SELECT name, source FROM runs") == [(Path(name).stem, str(source))]
    rows = query(db, "SELECT provider, endpoint, model, format, state, attempts FROM jobs ORDER BY id")
    assert {row[:3] for row in rows} == _expected_rows(name)
    assert {row[3] for row in rows} == formats
    assert {row[4:] for row in rows} == {("pending", 0)}
    ids = [custom_id for (custom_id,) in query(db, "SELECT custom_id FROM jobs ORDER BY id")]
    assert len(set(ids)) == lines  # every line is a job, in manifest order
    assert [n for (n,) in query(db, "SELECT line_number FROM jobs ORDER BY id")] == list(range(1, lines + 1))


# --- validation: every case reported as FILE:LINE: field: reason, exit 2, nothing inserted -------------

DEEP = b'{"prompt": "x", "metadata": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}"
CASES: list[tuple[str, bytes, str, str]] = [
    ("invalid JSON", b'{"prompt": "x",}', "line", "invalid JSON: Expecting property name"),
    ("not an object", b"[1, 2]", "line", "must be a JSON object, not an array"),
    (
        "no prompt or messages",
        b'{"id": "a", "provider": "fake"}',
        "prompt",
        "a simple line needs exactly one of prompt and messages",
    ),
    ("wrong type", b'{"prompt": 5, "provider": "fake"}', "prompt", "must be a string, not a number"),
    (
        "wrong type too",
        b'{"prompt": "x", "max_tokens": "many", "provider": "fake"}',
        "max_tokens",
        "must be an",
    ),
    (
        "unknown url",
        b'{"custom_id": "u", "method": "POST", "url": "/v1/nope", "body": {"model": "m"}}',
        "url",
        "unknown url '/v1/nope'",
    ),
    (
        "duplicate id",
        b'{"id": "first", "prompt": "b", "provider": "fake"}',
        "id",
        "duplicate id 'first': line 1",
    ),
    ("NaN", b'{"prompt": NaN}', "prompt", "NaN is not valid JSON"),
    ("Infinity", b'{"prompt": "x", "temperature": Infinity}', "temperature", "Infinity is not valid JSON"),
    ("duplicate key", b'{"prompt": "x", "prompt": "y"}', "prompt", "duplicate key"),
    ("nesting over 64", DEEP, "line", "nested deeper than 64 levels"),
    ("not UTF-8", b'{"prompt": "caf\xe9"}', "line", "not valid UTF-8: byte 0xe9"),
    ("over 8 MiB", b'{"prompt": "' + b"x" * (8 * MIB) + b'"}', "line", f"longer than {8 * MIB} bytes"),
]


@pytest.mark.parametrize(("case", "bad", "field", "reason"), CASES, ids=[case[0] for case in CASES])
def test_an_invalid_line_is_reported_and_nothing_is_inserted(
    tmp_path: Path, db: Path, case: str, bad: bytes, field: str, reason: str
) -> None:
    source = write_lines(
        tmp_path / "jobs.jsonl", [{"id": "first", "prompt": "a", "provider": "fake"}, bad, *prompts(1)]
    )
    result = cli("submit", str(source))
    assert result.exit_code == 2, result.stderr
    assert f"{source}:2: {field}: {reason}" in result.stderr
    assert "1 invalid line(s); nothing was inserted" in result.stderr
    assert count(db, "runs") == 0 and count(db) == 0
    assert "Traceback" not in result.stderr


def test_every_invalid_line_is_reported_in_one_go_through_the_real_command(tmp_path: Path, db: Path) -> None:
    lines: list[bytes | str | dict[str, Any]] = [{"id": "first", "prompt": "a", "provider": "fake"}]
    lines += [bad for _, bad, _, _ in CASES if len(bad) < MIB]
    source = write_lines(tmp_path / "jobs.jsonl", lines)
    done = subprocess_cli("submit", str(source), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    reported = re.findall(rf"^(?:error: )?{re.escape(str(source))}:(\d+): (\S+): ", done.stderr, re.M)
    assert sorted({int(n) for n, _ in reported}) == list(range(2, len(lines) + 1))
    assert f"{len(lines) - 1} invalid line(s); nothing was inserted" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert count(db, "runs") == 0 and count(db) == 0


def test_only_the_first_twenty_issues_are_listed_with_a_count_of_the_rest(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", [*prompts(3), *([b"[]"] * 25)])
    result = cli("submit", str(source))
    assert result.exit_code == 2
    listed = re.findall(rf"{re.escape(str(source))}:(\d+): line: must be a JSON object", result.stderr)
    assert [int(n) for n in listed] == list(range(4, 24))
    assert "... and 5 more invalid line(s)" in result.stderr
    assert "25 invalid line(s); nothing was inserted" in result.stderr
    assert count(db) == 0


def test_a_bom_crlf_blank_lines_and_no_final_newline_are_accepted(tmp_path: Path, db: Path) -> None:
    source = tmp_path / "odd.jsonl"
    source.write_bytes(
        b'\xef\xbb\xbf{"prompt": "a", "provider": "fake"}\r\n\r\n'
        b'{"prompt": "b", "provider": "fake"}\r\n   \r\n\n'
        b'{"prompt": "caf\xc3\xa9", "provider": "fake"}'
    )
    result = cli("submit", str(source))
    assert result.exit_code == 0, result.stderr
    rows = query(db, "SELECT custom_id, line_number, request_json FROM jobs ORDER BY id")
    assert [(custom_id, n) for custom_id, n, _ in rows] == [("line-1", 1), ("line-3", 3), ("line-6", 6)]
    assert json.loads(rows[2][2])["messages"] == [{"role": "user", "content": "café"}]


# --- --skip-invalid --------------------------------------------------------------------------------------


def test_skip_invalid_queues_the_valid_lines_and_writes_the_rejects(tmp_path: Path, db: Path) -> None:
    source = write_lines(
        tmp_path / "mixed.jsonl", [*prompts(2), b'{"prompt": NaN}', *prompts(1, start=3), b"[1]"]
    )
    result = cli("submit", str(source), "--skip-invalid")
    assert result.exit_code == 0, result.stderr
    assert sorted(custom_id for (custom_id,) in query(db, "SELECT custom_id FROM jobs")) == ["p1", "p2", "p3"]
    rejects = tmp_path / "mixed.jsonl.rejects.jsonl"
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    records = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(r["file"], r["line"]) for r in records] == [(str(source), 3), (str(source), 5)]
    assert records[0]["errors"] == [
        {"field": "prompt", "reason": "NaN is not valid JSON (NaN and Infinity are not allowed)"}
    ]
    assert records[1]["errors"][0]["field"] == "line"
    assert f"warning: 2 invalid line(s) skipped; see {rejects}" in result.stderr
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []  # no temp file left


def test_without_invalid_lines_skip_invalid_writes_no_rejects_file(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "clean.jsonl", prompts(3))
    result = cli("submit", str(source), "--skip-invalid")
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert count(db) == 3 and not (tmp_path / "clean.jsonl.rejects.jsonl").exists()


# --- idempotence and conflicts ------------------------------------------------------------------------


def test_resubmitting_the_same_file_inserts_nothing_and_says_so(tmp_path: Path, db: Path) -> None:
    source = shutil.copy(JOBS / "simple.jsonl", tmp_path / "simple.jsonl")
    first = subprocess_cli("submit", str(source), "--provider", "fake", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = query(db, "SELECT * FROM jobs ORDER BY id")
    second = subprocess_cli("submit", str(source), "--provider", "fake", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 job(s) queued, 20 already present (nothing new)" in second.stderr
    assert query(db, "SELECT * FROM jobs ORDER BY id") == before and count(db, "runs") == 1


def test_a_grown_file_adds_only_its_new_lines(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "grow.jsonl", prompts(3))
    assert cli("submit", str(source)).exit_code == 0
    write_lines(source, prompts(5))
    result = cli("submit", str(source))
    assert result.exit_code == 0 and "2 job(s) queued, 3 already present" in result.stderr
    assert count(db) == 5


def test_an_existing_id_with_different_content_is_an_error_naming_it(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", prompts(3))
    assert cli("submit", str(source)).exit_code == 0
    before = query(db, "SELECT * FROM jobs ORDER BY id")
    changed = [
        *prompts(1),
        {"id": "p2", "prompt": "Something else", "provider": "fake"},
        *prompts(1, start=3),
    ]
    write_lines(source, [*changed, *prompts(2, start=4)])  # two new lines too: they must not go in either
    result = cli("submit", str(source))
    assert result.exit_code == 2
    assert "run 'jobs' already has 1 id(s) with different content: p2" in result.stderr
    assert "nothing was inserted" in result.stderr
    assert query(db, "SELECT * FROM jobs ORDER BY id") == before


# --- runs, status, retry, cancel -------------------------------------------------------------------------


def test_the_run_is_named_after_the_file_unless_given_and_runs_lists_them(tmp_path: Path, db: Path) -> None:
    first = write_lines(tmp_path / "first batch.jsonl", prompts(2))
    second = write_lines(tmp_path / "second.jsonl", prompts(3))
    assert cli("submit", str(first)).exit_code == 0
    assert cli("submit", str(second), "--run", "nightly").exit_code == 0
    assert query(db, "SELECT name, source FROM runs ORDER BY id") == [
        ("first batch", str(first)),
        ("nightly", str(second)),
    ]
    listed = cli("runs")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert [line.split("  ")[0].strip() for line in lines] == ["first batch", "nightly"]
    assert re.search(r"\b2 job\(s\)", lines[0]) and re.search(r"\b3 job\(s\)", lines[1])
    # The latest run is the default; --run picks another.
    assert json.loads(cli("status", "--json").stdout)["run"] == "nightly"
    assert json.loads(cli("status", "--json", "--run", "first batch").stdout)["total"] == 2


STATUS_KEYS = {
    "run",
    "total",
    "states",
    "attempts",
    "attempts_this_try",
    "tokens",
    "cost_usd",
    "cost_priced_usd",
    "priced_results",
    "unpriced_results",
    "first_activity",
    "last_activity",
    "top_errors",
    "throughput_per_s",
    "eta_s",
    "cost_projected_usd",
    "resent_after_interruption",
    "possibly_billed",
    "runners",
}


def status_of(*args: str) -> dict[str, Any]:
    result = cli("status", "--json", *args)
    assert result.exit_code == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_status_json_has_stable_keys_and_right_counts(tmp_path: Path, db: Path) -> None:
    source = shutil.copy(JOBS / "simple.jsonl", tmp_path / "simple.jsonl")
    assert cli("submit", str(source), "--provider", "fake").exit_code == 0
    queued = status_of()
    assert set(queued) == STATUS_KEYS
    assert set(queued["states"]) == {"pending", "claimed", "running", "succeeded", "failed", "cancelled"}
    assert set(queued["tokens"]) == {"input", "output", "cached"}
    assert (queued["run"], queued["total"], queued["attempts"]) == ("simple", 20, 0)
    assert queued["states"] == {
        "pending": 20, "claimed": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0
    }  # fmt: skip

    ran = cli("run", "--no-progress")
    assert ran.exit_code == 0, ran.stderr
    done = status_of()
    assert set(done) == STATUS_KEYS
    assert done["states"] == {
        "pending": 0, "claimed": 0, "running": 0, "succeeded": 20, "failed": 0, "cancelled": 0
    }  # fmt: skip
    [(tokens_in, tokens_out)] = query(db, "SELECT sum(input_tokens), sum(output_tokens) FROM results")
    assert done["attempts"] == 20 and done["tokens"]["input"] == tokens_in > 0
    assert done["tokens"]["output"] == tokens_out > 0


def test_status_shows_the_live_runners_and_the_jobs_they_hold(tmp_path: Path, db: Path) -> None:
    assert cli("submit", str(write_lines(tmp_path / "jobs.jsonl", prompts(5)))).exit_code == 0

    async def three_runners() -> None:
        store = await Store.open(str(db))
        try:
            run = await store.find_run(None)
            for runner_id, host, pid in [("busy", "a", 101), ("idle", "b", 202), ("gone", "c", 303)]:
                await store.register_runner(runner_id=runner_id, host=f"box-{host}", pid=pid, run_id=run.id)
            # on this machine, with a process that has exited: dead at once, whatever its heartbeat says
            await store.register_runner(
                runner_id="died", host=socket.gethostname(), pid=dead_pid, run_id=run.id
            )
            await store.claim(run.id, "busy", 3, lease_seconds=60)
            await store.mark_stopped(["gone"])
        finally:
            await store.close()

    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    dead_pid = exited.pid
    asyncio.run(three_runners())
    runners = status_of()["runners"]
    assert [(r["id"], r["host"], r["pid"], r["jobs_held"], r["alive"]) for r in runners] == [
        ("busy", "box-a", 101, 3, True),
        ("idle", "box-b", 202, 0, True),
        ("died", socket.gethostname(), dead_pid, 0, False),
    ]  # the stopped one is not listed
    assert all(r["started_at"] and r["heartbeat_at"] for r in runners)
    text = cli("status").stdout
    assert re.search(r"runner +live: box-a pid 101, holds 3 job\(s\), started \S+, heartbeat \S+", text), text
    assert re.search(rf"runner +dead: \S+ pid {dead_pid},", text), text
    assert "box-c" not in text


def test_retry_failed_and_cancel_change_states(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", prompts(6))
    assert cli("submit", str(source)).exit_code == 0
    # A permanent failure the fake provider cannot produce from a valid line: planted on three jobs.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE jobs SET state = 'failed', attempts = 3, last_error_class = 'permanent',"
            " last_error = '400 bad request' WHERE custom_id IN ('p1', 'p2', 'p3')"
        )
    assert status_of()["states"]["failed"] == 3

    retried = cli("retry", "--failed")
    assert retried.exit_code == 0 and "3 failed job(s) requeued" in retried.stderr
    states = query(db, "SELECT custom_id, state, attempts FROM jobs ORDER BY id")
    assert states == [(f"p{i}", "pending", 0) for i in range(1, 7)]

    cancelled = cli("cancel")
    assert cancelled.exit_code == 0 and "6 job(s) cancelled" in cancelled.stderr
    assert query(db, "SELECT DISTINCT state FROM jobs") == [("cancelled",)]
    assert status_of()["states"]["cancelled"] == 6
    assert cli("retry", "--failed").stderr.startswith("0 failed job(s) requeued")


# --- errors and database selection -------------------------------------------------------------------


def test_a_database_without_runs_or_an_unknown_run_is_a_clear_error(tmp_path: Path, db: Path) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    missing_db = cli("status", "--db", str(elsewhere))
    assert missing_db.exit_code == 2
    assert missing_db.stderr == f"error: no database at {elsewhere}: submit a manifest first, or pass --db\n"
    assert not elsewhere.exists()  # a read command leaves no empty database behind
    sqlite3.connect(elsewhere).close()  # an empty database file: opened (and migrated), but it has no runs
    empty = cli("status", "--db", str(elsewhere))
    assert empty.exit_code == 2
    assert (
        empty.stderr
        == "error: no runs in this database yet: submit a manifest first (batchrunner submit FILE)\n"
    )
    assert cli("submit", str(write_lines(tmp_path / "jobs.jsonl", prompts(1)))).exit_code == 0
    for command in (["status"], ["export"], ["retry", "--failed"], ["cancel"]):
        unknown = cli(*command, "--run", "nope")
        assert unknown.exit_code == 2, command
        assert unknown.stderr == "error: no run named 'nope' (batchrunner runs lists them)\n"
    missing = cli("submit", str(tmp_path / "missing.jsonl"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_unknown_run_through_the_real_command(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "none.db").close()  # a database, without that run
    done = subprocess_cli("status", "--run", "nope", "--db", str(tmp_path / "none.db"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: no run named 'nope' (batchrunner runs lists them)\n" and done.stdout == ""


def test_db_flag_and_environment_variable_both_select_the_database(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", prompts(2))
    from_env = tmp_path / "env.db"
    assert cli("submit", str(source), env={"BATCHRUNNER_DB": str(from_env)}).exit_code == 0
    flagged = tmp_path / "sub" / "flag.db"
    assert (
        cli("submit", str(source), "--db", str(flagged), env={"BATCHRUNNER_DB": str(from_env)}).exit_code == 0
    )
    assert count(from_env) == 2 and count(flagged) == 2 and not db.exists()
    done = subprocess_cli("status", "--json", cwd=tmp_path, env={"BATCHRUNNER_DB": str(flagged)})
    assert done.returncode == 0 and json.loads(done.stdout)["total"] == 2
    assert stat.S_IMODE(flagged.stat().st_mode) == 0o600


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+aiosqlite"])
def test_a_sqlalchemy_sqlite_url_works_for_db(tmp_path: Path, scheme: str) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", prompts(4))
    target = tmp_path / "by-url.db"
    url = f"{scheme}:///{target}"
    result = cli("submit", str(source), "--db", url)
    assert result.exit_code == 0, result.stderr
    assert count(target) == 4
    assert json.loads(cli("status", "--json", "--db", url).stdout)["total"] == 4


# --- storage faults ---------------------------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 256 KiB tmpfs."""
    with tmpfs(tmp_path / "tiny", "256k") as mount_point:
        yield mount_point


def fill_the_disk(tmp_path: Path, tiny_fs: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Submit 20 jobs to a database on the tiny filesystem, then a file far too big for what is left."""
    db = tiny_fs / "full.db"
    small = shutil.copy(JOBS / "simple.jsonl", tmp_path / "simple.jsonl")
    first = subprocess_cli("submit", str(small), "--provider", "fake", "--db", str(db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    big = write_lines(
        tmp_path / "big.jsonl",
        [{"id": f"big-{i}", "prompt": "y" * 400, "provider": "fake"} for i in range(2000)],
    )
    return db, subprocess_cli("submit", str(big), "--db", str(db), cwd=tmp_path)


def test_a_full_disk_fails_the_submit_and_keeps_the_database_whole(tmp_path: Path, tiny_fs: Path) -> None:
    db, done = fill_the_disk(tmp_path, tiny_fs)
    assert done.returncode != 0
    assert "database or disk is full" in done.stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert count(db) == 20 and query(db, "SELECT name FROM runs") == [("simple",)]  # the big run is not there


def test_a_full_disk_is_a_one_line_error_with_exit_code_4(tmp_path: Path, tiny_fs: Path) -> None:
    _, done = fill_the_disk(tmp_path, tiny_fs)
    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    assert re.fullmatch(r"error: [^\n]*(disk|database) (is )?full[^\n]*\n", done.stderr, re.I), done.stderr


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    """A database with 20 jobs on a tmpfs that is then remounted read-only (chmod does not stop root)."""
    with tmpfs(tmp_path / "ro", "4m") as mount_point:
        db = mount_point / "ro.db"
        small = shutil.copy(JOBS / "simple.jsonl", tmp_path / "simple.jsonl")
        assert cli("submit", str(small), "--provider", "fake", "--db", str(db)).exit_code == 0
        remount_read_only(mount_point)
        yield db


def test_a_read_only_database_changes_nothing(tmp_path: Path, read_only_db: Path) -> None:
    other = write_lines(tmp_path / "other.jsonl", prompts(3))
    done = subprocess_cli("submit", str(other), "--db", str(read_only_db), cwd=tmp_path)
    assert done.returncode != 0
    assert re.search("read-only|readonly|unable to open database file", done.stderr, re.I), done.stderr
    conn = sqlite3.connect(f"file:{read_only_db}?mode=ro&immutable=1", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (20,)
        assert conn.execute("SELECT name FROM runs").fetchall() == [("simple",)]
    finally:
        conn.close()


def test_a_read_only_database_is_a_one_line_error(tmp_path: Path, read_only_db: Path) -> None:
    other = write_lines(tmp_path / "other.jsonl", prompts(3))
    done = subprocess_cli("submit", str(other), "--db", str(read_only_db), cwd=tmp_path)
    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    assert re.fullmatch(r"error: [^\n]*read-only[^\n]*\n", done.stderr, re.I), done.stderr
