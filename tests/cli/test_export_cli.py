"""``batchrunner export`` through the real CLI: data only on stdout, a full device a one-line error."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.store_data import OUTPUTS, seed

from batchrunner.cli import main


@pytest.fixture
async def seeded(tmp_path: Path) -> str:
    """A finished run of ``OUTPUTS`` (and one failed job) in a SQLite file."""
    target = str(tmp_path / "export.db")
    await seed(target)
    return target


@pytest.mark.slow  # the CLI as a subprocess
def test_cli_export_to_dev_full_exits_non_zero(seeded: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchrunner", "export", "--db", seeded, "-o", "/dev/full"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr


def test_cli_export_to_stdout_is_pure_data(seeded: str) -> None:
    result = CliRunner().invoke(main, ["export", "--db", seeded, "--format", "csv", "-o", "-"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][0] == "custom_id" and len(rows) == len(OUTPUTS) + 2
