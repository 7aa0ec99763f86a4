"""The peer of issue 11: the openai-cookbook's ``examples/api_request_parallel_processor.py``, run as its
docstring says, against the fake server.

    python -m harness.cookbook_client --script PATH --manifest FILE --base-url URL --out F

The script is not in this repository (fetch it from github.com/openai/openai-cookbook and pass its path;
its commit is recorded with the results). Two things keep it from running against 127.0.0.1 as it is, and
are changed here, without editing the file, before it runs:

- ``tiktoken`` downloads its encodings from the internet on first use, which benchmarks must not do: a
  stand-in module gives the same interface with about four characters a token (the count only paces the
  script's token budget, which is set far above what the run needs);
- ``api_endpoint_from_url`` accepts only ``https://`` URLs: it is given one that also accepts ``http://``.

Its request lines are the manifest's ``body`` objects (the script's own format); it is given limits far
above the run's (``--max_requests_per_minute``/``--max_tokens_per_minute``), logging at ERROR, and it saves
each answer to ``F.answers.jsonl`` as it goes (its own behaviour). It imports no batchrunner code.
"""

from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
import time
import types
from pathlib import Path

from harness.paths import API_KEY

UNLIMITED = "1000000000"


def stand_in_tiktoken() -> types.ModuleType:
    module = types.ModuleType("tiktoken")

    class Encoding:
        def encode(self, text: str) -> list[int]:
            return [0] * max(1, len(text) // 4)

    module.get_encoding = lambda _name: Encoding()  # type: ignore[attr-defined]
    return module


def endpoint_from_url(request_url: str) -> str:
    match = re.search(r"^https?://[^/]+/v\d+/(.+)$", request_url)
    if match is None:
        raise ValueError(f"not an API URL: {request_url}")
    return match[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--script", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    requests = args.out.with_name(args.out.name + ".requests.jsonl")
    with requests.open("w") as out:
        for line in args.manifest.read_text().splitlines():
            if line.strip():
                out.write(json.dumps(json.loads(line)["body"]) + "\n")
    saved = args.out.with_name(args.out.name + ".answers.jsonl")
    sys.modules["tiktoken"] = stand_in_tiktoken()
    namespace = runpy.run_path(str(args.script), run_name="cookbook")
    namespace["api_endpoint_from_url"].__globals__["api_endpoint_from_url"] = endpoint_from_url
    start = time.time()
    import asyncio

    asyncio.run(
        namespace["process_api_requests_from_file"](
            requests_filepath=str(requests),
            save_filepath=str(saved),
            request_url=args.base_url.rstrip("/") + "/chat/completions",
            api_key=API_KEY,
            max_requests_per_minute=float(UNLIMITED),
            max_tokens_per_minute=float(UNLIMITED),
            token_encoding_name="cl100k_base",
            max_attempts=5,
            logging_level=40,
        )
    )
    ok = sum(1 for line in saved.read_text().splitlines() if '"choices"' in line) if saved.exists() else 0
    args.out.write_text(json.dumps({"ok": ok, "span_s": time.time() - start}))


if __name__ == "__main__":
    main()
