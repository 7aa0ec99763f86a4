"""The package's layers (docs/architecture.md "Dependency direction"): every import points down, never
up or sideways, and each third-party library has one home. Checked over the source with ``ast``
(TYPE_CHECKING imports count too), so a wrong import fails here before anyone has to notice it in review."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "batchrunner"

LAYERS: dict[str, int] = {
    "cli": 7,
    "dashboard": 7,
    "api": 6,
    "engine": 5,
    "store": 5,
    "export": 5,
    "config": 4,
    "manifest": 4,
    "providers": 3,
    "policy": 2,
    "errors": 1,
    "secret": 1,
    "models": 0,
}
"""A part may import its own modules and parts of a lower rank: not a higher one (up), not another of
the same rank (sideways). ``batchrunner/__init__.py`` (the public surface) and ``__main__`` sit above all."""

ALLOWED = {
    (
        "engine",
        "batchrunner.store.base",
    ),  # the EngineStore Protocol: the one part of the store the engine sees
    ("cli", "batchrunner.fakeserver.command"),  # the CLI registers the fake server's own command
    ("cli", "batchrunner.dashboard.server"),  # `batchrunner dashboard` and `run --dashboard` start it
}

HOMES: dict[str, tuple[str, ...]] = {
    "click": ("batchrunner.cli", "batchrunner.fakeserver.command"),
    "sqlalchemy": ("batchrunner.store",),
    "openai": ("batchrunner.providers.openai",),
    "anthropic": ("batchrunner.providers.anthropic",),
    "aiohttp": ("batchrunner.fakeserver", "batchrunner.providers.http", "batchrunner.dashboard"),
    "pydantic": ("batchrunner.config",),
    "yaml": ("batchrunner.config",),
    "dotenv": ("batchrunner.config",),
    "aiofiles": ("batchrunner.export",),
}
"""Each third-party library's home (STYLE habit 4): only these modules (or packages) may import it."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, module imported) for every import in ``source``, relative ones resolved."""
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # (the package does not use them; resolved as from a plain module)
                base = ".".join(package[: len(package) - node.level])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield node.lineno, target
            if target == "batchrunner":  # ``from batchrunner import api`` imports batchrunner.api
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"


def part_of(module: str) -> str:
    """The layer a ``batchrunner.X...`` module belongs to (``X``), or "" for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(module: str, source: str) -> list[str]:
    """What is wrong with ``module``'s imports, one line each (empty: nothing)."""
    found = []
    mine = part_of(module)
    for line, target in imports_of(source, module):
        where = f"{module}:{line} imports {target}"
        top = target.split(".")[0]
        if top in HOMES and not module.startswith(HOMES[top]):
            found.append(f"{where}: only {', '.join(HOMES[top])} may import {top}")
        if top != "batchrunner" or mine in {"", "__main__"}:
            continue
        theirs = part_of(target)
        if module == "batchrunner.store.base" and target != "batchrunner.models":
            found.append(f"{where}: the EngineStore Protocol imports nothing of batchrunner but models")
            continue
        if theirs in {"", mine} or (mine, target) in ALLOWED:
            continue
        if mine == "fakeserver" or theirs == "fakeserver":
            found.append(f"{where}: the fake server imports nothing of batchrunner, and only the CLI it")
        elif theirs not in LAYERS or mine not in LAYERS:
            found.append(
                f"{where}: {mine if mine not in LAYERS else theirs} is in no layer (tests/test_layering.py)"
            )
        elif LAYERS[theirs] > LAYERS[mine]:
            found.append(f"{where}: an upward import ({mine} is below {theirs})")
        elif LAYERS[theirs] == LAYERS[mine]:
            found.append(f"{where}: a sideways import ({mine} and {theirs} are peers)")
    return found


def test_every_import_points_down_and_each_library_has_one_home() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(module_name(path), path.read_text(encoding="utf-8"))
    assert not found, "layering broken (see docs/architecture.md):\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # a pure policy reaching into the store: upward
        ("batchrunner.policy.retry", "from batchrunner.store.store import Store", "an upward import"),
        # the engine using the concrete store instead of its Protocol: sideways
        ("batchrunner.engine.runner", "from batchrunner.store.store import Store", "a sideways import"),
        # ... and inside a TYPE_CHECKING block, which still is a dependency
        (
            "batchrunner.engine.runner",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from batchrunner.api import run",
            "an upward import",
        ),
        # config and manifest are peers
        ("batchrunner.manifest.reader", "from batchrunner.config import Settings", "a sideways import"),
        # the fake server stays self-contained
        ("batchrunner.fakeserver.app", "from batchrunner.cli import main", "the fake server imports nothing"),
        # SQLAlchemy lives in the store only
        ("batchrunner.api.reading", "import sqlalchemy", "only batchrunner.store may import sqlalchemy"),
        # a relative import is resolved before it is judged
        ("batchrunner.providers.openai", "from ..engine import runner", "an upward import"),
        # the Protocol the engine sees stays free of the store's machinery
        (
            "batchrunner.store.base",
            "from batchrunner.store import tables",
            "imports nothing of batchrunner but",
        ),
        # a name through the public surface's re-exports, not from its home
        ("batchrunner.engine.runner", "from batchrunner import RunReport", "in no layer"),
        # the dashboard renders status through what the CLI hands it, never by importing the CLI
        (
            "batchrunner.dashboard.server",
            "from batchrunner.cli.render import status_json",
            "a sideways import",
        ),
        # and nothing below the CLI starts it
        ("batchrunner.api.running", "from batchrunner.dashboard.server import start_dashboard", "an upward"),
        # what is allowed
        ("batchrunner.cli.dashboard", "from batchrunner.dashboard.server import start_dashboard", None),
        ("batchrunner.engine.runner", "from batchrunner.store.base import EngineStore", None),
        ("batchrunner.api.running", "from batchrunner.engine.runner import Runner", None),
    ],
)
def test_a_wrong_import_is_caught(module: str, source: str, expected: str | None) -> None:
    found = violations(module, source)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found
