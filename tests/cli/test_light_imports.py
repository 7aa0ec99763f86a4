"""``batchrunner --help`` and ``batchrunner status`` import only what they use: not the SDKs, not aiohttp
(the fake server's), not the engine (issue 11: every invocation pays for its imports). Checked in a fresh
interpreter, from ``sys.modules`` after the command ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[2] / "jobs"

NEVER = (
    "openai",
    "anthropic",
    "aiohttp",
    "httpx",
    "batchrunner.fakeserver.app",
    "batchrunner.fakeserver.server",
)
"""What no command but ``run`` (the SDKs) and ``fake-server`` (aiohttp) may import."""

PROBE = """
import json, sys
from batchrunner.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules_after(cwd: Path, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def loaded(modules: set[str], name: str) -> bool:
    return any(module == name or module.startswith(name + ".") for module in modules)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["fake-server", "--help"], ["--version"]])
def test_help_imports_no_sdk_no_aiohttp_no_store(tmp_path: Path, args: list[str]) -> None:
    modules = modules_after(tmp_path, *args)
    assert "batchrunner.cli" in modules  # the probe ran the CLI
    for name in (*NEVER, "sqlalchemy", "pydantic", "batchrunner.engine", "batchrunner.api"):
        assert not loaded(modules, name), name


def test_status_imports_the_store_but_no_sdk_no_aiohttp_no_engine(tmp_path: Path) -> None:
    submitted = subprocess.run(
        [sys.executable, "-m", "batchrunner", "submit", str(JOBS / "simple.jsonl"), "--provider", "fake"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    modules = modules_after(tmp_path, "status")
    assert "batchrunner.store.store" in modules and "batchrunner.api.reading" in modules
    for name in (*NEVER, "batchrunner.engine.runner", "batchrunner.manifest", "batchrunner.providers.openai"):
        assert not loaded(modules, name), name
