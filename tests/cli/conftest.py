"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The database the autouse fixture points BATCHRUNNER_DB at."""
    return tmp_path / "batchrunner.db"
