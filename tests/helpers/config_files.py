"""Config files for the settings tests: write one into a directory, load the settings, the error it gives."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from batchrunner.config import Settings, load_settings
from batchrunner.errors import ConfigError


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load(
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object | None] | None = None,
    config_path: Path | None = None,
) -> Settings:
    return load_settings(flags=flags or {}, env=env or {}, cwd=cwd, config_path=config_path)


def config_error(cwd: Path, text: str, *, name: str = "batchrunner.toml") -> str:
    """The message of the ConfigError that loading ``text`` raises."""
    write(cwd, name, text)
    with pytest.raises(ConfigError) as info:
        load(cwd)
    return str(info.value)
