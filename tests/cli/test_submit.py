"""``batchrunner submit``: the example manifests, every invalid line reported, ``--skip-invalid``,
idempotent resubmits, and storage faults.

Through the real CLI, in-process with click's runner and as a subprocess, into real SQLite files under
tmp_path; the assertions are on rows (read back with ``sqlite3``), files and exit codes. The storage-fault
tests mount tiny tmpfs filesystems and so need root, as CI and the dev machines have (the export tests do
the same).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.database import count, query
from helpers.manifests import fake_lines, write_lines
from helpers.running import cli, subprocess_cli
from helpers.tmpfs import remount_read_only, tmpfs

JOBS = Path(__file__).resolve().parents[2] / "jobs"
MIB = 1024 * 1024


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
        tmp_path / "jobs.jsonl", [{"id": "first", "prompt": "a", "provider": "fake"}, bad, *fake_lines(1)]
    )
    result = cli("submit", str(source))
    assert result.exit_code == 2, result.stderr
    assert f"{source}:2: {field}: {reason}" in result.stderr
    assert "1 invalid line(s); nothing was inserted" in result.stderr
    assert count(db, "runs") == 0 and count(db) == 0
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # the CLI as a subprocess
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
    source = write_lines(tmp_path / "jobs.jsonl", [*fake_lines(3), *([b"[]"] * 25)])
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
        tmp_path / "mixed.jsonl", [*fake_lines(2), b'{"prompt": NaN}', *fake_lines(1, start=3), b"[1]"]
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
    source = write_lines(tmp_path / "clean.jsonl", fake_lines(3))
    result = cli("submit", str(source), "--skip-invalid")
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert count(db) == 3 and not (tmp_path / "clean.jsonl.rejects.jsonl").exists()


# --- idempotence and conflicts ------------------------------------------------------------------------


@pytest.mark.slow  # the CLI as a subprocess, twice
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
    source = write_lines(tmp_path / "grow.jsonl", fake_lines(3))
    assert cli("submit", str(source)).exit_code == 0
    write_lines(source, fake_lines(5))
    result = cli("submit", str(source))
    assert result.exit_code == 0 and "2 job(s) queued, 3 already present" in result.stderr
    assert count(db) == 5


def test_an_existing_id_with_different_content_is_an_error_naming_it(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", fake_lines(3))
    assert cli("submit", str(source)).exit_code == 0
    before = query(db, "SELECT * FROM jobs ORDER BY id")
    changed = [
        *fake_lines(1),
        {"id": "p2", "prompt": "Something else", "provider": "fake"},
        *fake_lines(1, start=3),
    ]
    write_lines(source, [*changed, *fake_lines(2, start=4)])  # two new lines too: they must not go in either
    result = cli("submit", str(source))
    assert result.exit_code == 2
    assert "run 'jobs' already has 1 id(s) with different content: p2" in result.stderr
    assert "nothing was inserted" in result.stderr
    assert query(db, "SELECT * FROM jobs ORDER BY id") == before


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


@pytest.mark.slow  # a tmpfs, subprocesses, a big file
def test_a_full_disk_fails_the_submit_and_keeps_the_database_whole(tmp_path: Path, tiny_fs: Path) -> None:
    db, done = fill_the_disk(tmp_path, tiny_fs)
    assert done.returncode != 0
    assert "database or disk is full" in done.stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert count(db) == 20 and query(db, "SELECT name FROM runs") == [("simple",)]  # the big run is not there


@pytest.mark.slow  # a tmpfs, subprocesses, a big file
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


@pytest.mark.slow  # a tmpfs, the CLI as a subprocess
def test_a_read_only_database_changes_nothing(tmp_path: Path, read_only_db: Path) -> None:
    other = write_lines(tmp_path / "other.jsonl", fake_lines(3))
    done = subprocess_cli("submit", str(other), "--db", str(read_only_db), cwd=tmp_path)
    assert done.returncode != 0
    assert re.search("read-only|readonly|unable to open database file", done.stderr, re.I), done.stderr
    conn = sqlite3.connect(f"file:{read_only_db}?mode=ro&immutable=1", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (20,)
        assert conn.execute("SELECT name FROM runs").fetchall() == [("simple",)]
    finally:
        conn.close()


@pytest.mark.slow  # a tmpfs, the CLI as a subprocess
def test_a_read_only_database_is_a_one_line_error(tmp_path: Path, read_only_db: Path) -> None:
    other = write_lines(tmp_path / "other.jsonl", fake_lines(3))
    done = subprocess_cli("submit", str(other), "--db", str(read_only_db), cwd=tmp_path)
    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    assert re.fullmatch(r"error: [^\n]*read-only[^\n]*\n", done.stderr, re.I), done.stderr
