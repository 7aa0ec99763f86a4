"""Which database and run a command acts on (``--db``, ``BATCHRUNNER_DB``, SQLAlchemy URLs, ``--run``),
and the one-line errors when there is none, through the real CLI in-process and as a subprocess."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from helpers.database import count
from helpers.manifests import fake_lines, write_lines
from helpers.running import cli, subprocess_cli


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
    assert cli("submit", str(write_lines(tmp_path / "jobs.jsonl", fake_lines(1)))).exit_code == 0
    for command in (["status"], ["export"], ["retry", "--failed"], ["cancel"]):
        unknown = cli(*command, "--run", "nope")
        assert unknown.exit_code == 2, command
        assert unknown.stderr == "error: no run named 'nope' (batchrunner runs lists them)\n"
    missing = cli("submit", str(tmp_path / "missing.jsonl"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


@pytest.mark.slow  # the CLI as a subprocess
def test_unknown_run_through_the_real_command(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "none.db").close()  # a database, without that run
    done = subprocess_cli("status", "--run", "nope", "--db", str(tmp_path / "none.db"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: no run named 'nope' (batchrunner runs lists them)\n" and done.stdout == ""


@pytest.mark.slow  # the CLI as a subprocess
def test_db_flag_and_environment_variable_both_select_the_database(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", fake_lines(2))
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
    source = write_lines(tmp_path / "jobs.jsonl", fake_lines(4))
    target = tmp_path / "by-url.db"
    url = f"{scheme}:///{target}"
    result = cli("submit", str(source), "--db", url)
    assert result.exit_code == 0, result.stderr
    assert count(target) == 4
    assert json.loads(cli("status", "--json", "--db", url).stdout)["total"] == 4
