"""The manifests of the run benchmarks: OpenAI Batch API chat lines, a unique prompt each (the fake server
keys its books by prompt, so duplicates are counted), about 300 bytes a line. The baseline sends the
``body`` of the same lines."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from harness.paths import MODEL

_TEXT = (
    "the battery lasts all day and the screen is great but the speaker is weak delivery was late support "
    "answered quickly price is fair would buy again quality feels cheap colour faded"
)
_WORDS = _TEXT.split(" ")


def chat_body(i: int, tag: str, rng: random.Random, *, stream: bool = False) -> dict[str, Any]:
    """The request of job ``i``; ``stream``: a streamed one, asking for its usage (as batchrunner would)."""
    review = " ".join(rng.choices(_WORDS, k=20))
    prompt = f"{tag} job {i}: classify the sentiment (positive/negative) of: {review}"
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 16,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def write_manifest(path: Path, jobs: int, tag: str, *, stream: bool = False) -> Path:
    """``jobs`` lines into ``path`` (the same ``tag`` always gives the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(tag)
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w") as out:
        for i in range(jobs):
            line = {
                "custom_id": f"{tag}-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(i, tag, rng, stream=stream),
            }
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    temp.replace(path)
    return path
