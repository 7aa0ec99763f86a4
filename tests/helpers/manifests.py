"""Manifests written for a test: one line per job, in the order given.

- :func:`prompts` and :func:`write_manifest`: simple lines whose prompts are the fake server's prompt keys,
  so every job has its own books and its own fault directive (the run tests);
- :func:`fake_lines` and :func:`write_lines`: lines for the in-process fake provider, and lines as raw bytes
  (invalid ones included) with any line end (the CLI's submit tests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MODEL = "gpt-4o-mini"


def prompts(n: int, tag: str, faults: Mapping[int, str] | None = None) -> dict[str, str]:
    """``n`` jobs ``{tag}-000``... with distinct prompts; ``faults`` adds a ``[[fault:PLAN]]`` by index."""
    faults = faults or {}
    jobs = {}
    for i in range(n):
        directive = f" [[fault:{faults[i]}]]" if i in faults else ""
        jobs[f"{tag}-{i:03d}"] = f"{tag} prompt number {i}{directive}"
    return jobs


def write_manifest(
    path: Path, jobs: Mapping[str, str], *, model: str = MODEL, max_tokens: int | None = None
) -> Path:
    """Simple manifest lines ``{"id", "prompt", "model"}`` (and ``max_tokens``), in the order given."""
    with path.open("w", encoding="utf-8") as out:
        for custom_id, prompt in jobs.items():
            line: dict[str, Any] = {"id": custom_id, "prompt": prompt, "model": model}
            if max_tokens is not None:
                line["max_tokens"] = max_tokens
            out.write(json.dumps(line) + "\n")
    return path


def fake_lines(n: int, start: int = 1) -> list[dict[str, Any]]:
    """``n`` simple lines ``p{start}``... for the fake provider (``"Say {i}"``)."""
    return [{"id": f"p{i}", "prompt": f"Say {i}", "provider": "fake"} for i in range(start, start + n)]


def write_lines(path: Path, lines: Sequence[bytes | str | dict[str, Any]], end: bytes = b"\n") -> Path:
    """A manifest of these lines (dicts as JSON, str as UTF-8, bytes as they are), each ended by ``end``."""
    raw = [
        line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode()
        for line in lines
    ]
    path.write_bytes(b"".join(line + end for line in raw))
    return path
