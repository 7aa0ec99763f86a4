"""The code under test: a snapshot of the committed tree, so that edits other people make to the working
tree while a benchmark runs cannot change the code between repetitions.

:func:`activate` unpacks ``git archive HEAD batchrunner`` (once per commit, under the temporary directory)
and puts it first on ``sys.path`` and on ``PYTHONPATH`` for this process and every child started after
it; ``BENCH_LIVE=1`` uses the working tree instead. It runs when a benchmark starts, never on import.
Every result names what was measured (``machine.machine_info``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from harness.paths import ROOT

PREFIX = "br-bench-snapshot-"


def git(*args: str) -> str:
    """``git ARGS`` in the repository: its stdout, stripped ('?' when git cannot be run)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def snapshot_dir(commit: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{PREFIX}{commit[:12]}"


def unpack(commit: str) -> Path:
    """The directory holding ``batchrunner/`` as of ``commit``, unpacked if it is not there yet."""
    target = snapshot_dir(commit)
    if not (target / "batchrunner" / "__init__.py").exists():
        temp = Path(tempfile.mkdtemp(prefix=PREFIX))
        archive = subprocess.run(
            ["git", "archive", commit, "batchrunner"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(temp)], input=archive.stdout, check=True)
        with contextlib.suppress(OSError):  # another benchmark unpacked it meanwhile: keep theirs
            temp.rename(target)
    return target


def prepend_path(env: MutableMapping[str, str], directory: str) -> None:
    """Put ``directory`` first on ``env['PYTHONPATH']``."""
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [directory, env.get("PYTHONPATH")]))


@functools.cache
def activate() -> str:
    """Use the snapshot of ``HEAD`` from now on (once per process); what is under test, in words.

    Call it before this process imports ``batchrunner`` and before any child is started.
    """
    if os.environ.get("BENCH_LIVE") == "1":
        return "live working tree"
    commit = git("rev-parse", "HEAD")
    if commit in ("", "?"):
        return "live working tree (not a git checkout)"
    target = str(unpack(commit))
    sys.path.insert(0, target)
    prepend_path(os.environ, target)
    return f"snapshot of {commit[:12]}"


def code_path(ref: str) -> str | None:
    """A directory holding ``batchrunner/`` as of git ``ref`` (``live``: None, the working tree)."""
    if ref == "live":
        return None
    commit = subprocess.run(
        ["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    return str(unpack(commit))
