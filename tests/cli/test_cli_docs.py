"""``docs/cli.md`` is the ``--help`` of every command as it is now (``scripts/gen_cli_docs.py`` writes it)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from batchrunner.cli import main

ROOT = Path(__file__).resolve().parent
while not (ROOT / "pyproject.toml").exists():  # the repository root, wherever this file sits in tests/
    ROOT = ROOT.parent
SCRIPT = ROOT / "scripts" / "gen_cli_docs.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_md_is_current() -> None:
    gen = _generator()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == gen.render(), f"docs/cli.md is out of date: regenerate it with `{gen.REGENERATE}`"


def test_rendering_ignores_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _generator()
    wanted = gen.render()
    for columns in ("40", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        assert gen.render() == wanted, f"COLUMNS={columns} changed docs/cli.md"


def test_each_section_is_what_the_command_prints() -> None:
    gen = _generator()
    rendered = gen.render()
    for _, ctx in gen.commands(main):
        args = [*ctx.command_path.split()[1:], "--help"]
        printed = CliRunner().invoke(main, args, prog_name="batchrunner", terminal_width=gen.HELP_WIDTH)
        assert printed.exit_code == 0, printed.output
        assert f"## {ctx.command_path}\n\n```text\n{printed.output}```\n" in rendered, ctx.command_path


def test_as_in_an_80_column_terminal() -> None:
    command = Path(sys.executable).with_name("batchrunner")
    if not command.exists():
        pytest.skip("no batchrunner script beside this Python")
    env = {**os.environ, "COLUMNS": "80"}
    printed = subprocess.run([command, "run", "--help"], capture_output=True, text=True, env=env, check=True)
    assert f"## batchrunner run\n\n```text\n{printed.stdout}```\n" in _generator().render()


def test_check_fails_on_a_stale_file_and_names_the_command(tmp_path: Path) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text((ROOT / "docs" / "cli.md").read_text(encoding="utf-8").replace("Usage:", "Usage", 1))
    check = [sys.executable, str(SCRIPT), "--check", "--output", str(stale)]
    result = subprocess.run(check, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 1
    assert "is not current" in result.stderr
    assert ".venv/bin/python scripts/gen_cli_docs.py" in result.stderr
    gen = _generator()
    assert gen.main(["--output", str(stale)]) == 0
    assert gen.main(["--check", "--output", str(stale)]) == 0
