"""Write a deterministic manifest of mixed-format lines for the submit/export benchmark.

    python benchmarks/gen_manifest.py [--lines 1000000] [--out benchmarks/data/manifest-1000000.jsonl]

The same arguments always give the same bytes (a seeded RNG), so figures from different machines or
commits are comparable. The lines rotate through every manifest format and endpoint, about 250 bytes
each on average:

* simple ``prompt`` lines with an id, and without one (an automatic ``line-N`` id), some with ``system``
  and ``metadata``;
* simple ``messages`` lines with ``max_tokens`` and ``temperature``;
* OpenAI Batch ``/v1/chat/completions`` and ``/v1/embeddings`` lines;
* Anthropic Message Batches lines.

Simple lines name no model: submit them with ``--model`` (the benchmark passes ``--model gpt-4o-mini``).
``benchmarks/data/`` is ignored by git.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
SEED = 20240611

_REVIEWS = (
    "the battery lasts all day and the screen is great but the speaker is weak delivery was late support "
    "answered quickly price is fair would buy again quality feels cheap colour faded room was clean staff "
    "friendly breakfast cold view lovely noisy street"
)
_WORDS = _REVIEWS.split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(_WORDS, k=words))


def make_line(i: int, rng: random.Random) -> dict[str, Any]:
    """Line ``i`` (0-based) of the manifest; the formats rotate so every kind of line is in the mix."""
    kind = i % 6
    if kind == 0:
        return {
            "id": f"review-{i}",
            "prompt": f"Classify the sentiment (positive/negative): {_text(rng, 25)}",
        }
    if kind == 1:  # no id: the line gets line-<number>
        return {
            "prompt": f"Summarise in one line: {_text(rng, 17)}",
            "system": "You are terse.",
            "metadata": {"source": "reviews.csv", "row": i},
        }
    if kind == 2:
        return {
            "id": f"chat-{i}",
            "messages": [{"role": "user", "content": _text(rng, 22)}],
            "max_tokens": 64,
            "temperature": 0.2,
        }
    if kind == 3:
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Classify: {_text(rng, 19)}"}],
            "max_tokens": 16,
        }
        return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
    if kind == 4:
        body = {"model": "text-embedding-3-small", "input": _text(rng, 26)}
        return {"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings", "body": body}
    params = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 128,
        "messages": [{"role": "user", "content": f"Summarise: {_text(rng, 17)}"}],
    }
    return {"custom_id": f"msg-{i}", "params": params}


def default_path(lines: int) -> Path:
    return DATA_DIR / f"manifest-{lines}.jsonl"


def generate(path: Path, lines: int) -> int:
    """Write ``lines`` lines to ``path`` (via a temp file, so a partial file is never mistaken for a
    whole one); return the size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    temp = path.with_name(path.name + ".tmp")
    size = 0
    with temp.open("wb") as out:
        chunk: list[bytes] = []
        for i in range(lines):
            chunk.append(json.dumps(make_line(i, rng), ensure_ascii=False).encode() + b"\n")
            if len(chunk) == 10_000:
                data = b"".join(chunk)
                size += len(data)
                out.write(data)
                chunk.clear()
        data = b"".join(chunk)
        size += len(data)
        out.write(data)
    temp.replace(path)
    return size


def ensure(lines: int, path: Path | None = None) -> Path:
    """The manifest of ``lines`` lines, generated unless it is already there."""
    target = path or default_path(lines)
    if not target.exists():
        generate(target, lines)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, help="default: benchmarks/data/manifest-LINES.jsonl")
    args = parser.parse_args()
    path = args.out or default_path(args.lines)
    size = generate(path, args.lines)
    print(f"{path}: {args.lines:,} lines, {size:,} bytes ({size / max(args.lines, 1):.0f} bytes/line)")


if __name__ == "__main__":
    main()
