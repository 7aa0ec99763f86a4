"""Shared fixtures: every test gets an isolated environment (database, config, dummy keys).

The fixture plugins and helpers live in ``tests/helpers`` (importable as ``helpers.*``: ``pythonpath`` in
pyproject.toml); see ``tests/README.md`` for the tiers and markers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("helpers")  # a failed check in a helper shows its values, as in a test
pytest_plugins = ["helpers.fake_server_fixtures", "helpers.store_fixtures", "helpers.providers"]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the database and config at tmp_path and set dummy keys, so no test touches real ones."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHRUNNER_DB", str(tmp_path / "batchrunner.db"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-dummy")
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "BATCHRUNNER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
