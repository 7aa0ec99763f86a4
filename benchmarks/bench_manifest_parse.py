"""Micro-benchmark: manifest parsing + validation vs plain ``json.loads``, and a submit-like SQLite load.

    python benchmarks/bench_manifest_parse.py [--lines 200000] [--repeat 3] [--pydantic]

Generates a file of mixed-format lines (simple, OpenAI Batch, Anthropic; about 250 bytes each) and reports
lines/s for:

* ``json.loads``       - one ``json.loads`` per line (reading the file in binary): the floor;
* ``iter_manifest``    - batchrunner's streaming parser (strict JSON, checks, ids, JobSpecs);
* ``baseline submit``  - ``json.loads`` + ``sqlite3.executemany`` in batches (one transaction);
* ``manifest submit``  - ``iter_manifest`` + the same ``executemany``: the target is >= 80,000 lines/s
  and >= 50% of the baseline submit (see the manifest issue);
* with ``--pydantic``: the field checks alone, batchrunner's table vs strict pydantic models, per line.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from batchrunner.manifest import ManifestOptions, iter_manifest
from batchrunner.models import JobSpec

REVIEW = (
    "the battery lasts all day and the screen is great but the speaker is weak, delivery was late; support \
answered quickly, price is fair, would buy again, quality feels cheap, colour faded"
)
WORDS = REVIEW.replace(",", "").replace(";", "").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_line(i: int, rng: random.Random) -> dict[str, Any]:
    """One manifest line; the formats rotate so every kind of line is in the mix."""
    kind = i % 6
    if kind == 0:
        return {
            "id": f"review-{i}",
            "prompt": f"Classify the sentiment (positive/negative): {_text(rng, 26)}",
        }
    if kind == 1:
        return {
            "prompt": f"Summarise in one line: {_text(rng, 18)}",
            "system": "You are terse.",
            "metadata": {"source": "reviews.csv", "row": i},
        }
    if kind == 2:
        return {
            "id": f"chat-{i}",
            "messages": [{"role": "user", "content": _text(rng, 24)}],
            "max_tokens": 64,
            "temperature": 0.2,
        }
    if kind == 3:
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Classify: {_text(rng, 20)}"}],
            "max_tokens": 16,
        }
        return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
    if kind == 4:
        body = {"model": "text-embedding-3-small", "input": _text(rng, 28)}
        return {"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings", "body": body}
    params = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 128,
        "messages": [{"role": "user", "content": f"Summarise: {_text(rng, 20)}"}],
    }
    return {"custom_id": f"msg-{i}", "params": params}


def write_file(path: Path, lines: int) -> int:
    rng = random.Random(42)
    size = 0
    with path.open("wb") as out:
        for i in range(lines):
            data = json.dumps(make_line(i, rng), ensure_ascii=False).encode() + b"\n"
            size += len(data)
            out.write(data)
    return size


def best_rate(lines: int, repeat: int, run: Callable[[], object]) -> float:
    """Lines per second of the fastest of ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return lines / best


def plain_json(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Each non-blank line and ``json.loads`` of it: the least any parser must do."""
    with path.open("rb") as stream:
        for raw in stream:
            if raw.strip():
                yield raw, json.loads(raw)


def insert_all(rows: Iterable[tuple[Any, ...]], batch: int = 10_000) -> None:
    """The insert part of a submit: executemany in batches, one transaction, into a fresh database."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "bench.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, custom_id TEXT NOT NULL,"
            " line_number INTEGER NOT NULL, provider TEXT, endpoint TEXT, model TEXT,"
            " request_json TEXT NOT NULL, metadata_json TEXT, state TEXT NOT NULL DEFAULT 'pending',"
            " UNIQUE (run_id, custom_id))"
        )
        sql = (
            "INSERT OR IGNORE INTO jobs (run_id, custom_id, line_number, provider, endpoint, model,"
            " request_json, metadata_json) VALUES (1, ?, ?, ?, ?, ?, ?, ?)"
        )
        db.execute("BEGIN IMMEDIATE")
        pending: list[tuple[Any, ...]] = []
        for row in rows:
            pending.append(row)
            if len(pending) == batch:
                db.executemany(sql, pending)
                pending.clear()
        db.executemany(sql, pending)
        db.execute("COMMIT")
        db.close()


def baseline_rows(path: Path) -> Iterator[tuple[Any, ...]]:
    """The baseline submit stores each line as it is: no validation, no re-serialisation."""
    for n, (raw, obj) in enumerate(plain_json(path), 1):
        yield (str(obj.get("custom_id") or obj.get("id") or n), n, None, None, None, raw.decode(), None)


def manifest_rows(path: Path, options: ManifestOptions) -> Iterator[tuple[Any, ...]]:
    for item in iter_manifest(path, options):
        if type(item) is not JobSpec:
            raise SystemExit(f"unexpected rejection: {item}")
        yield (
            item.custom_id,
            item.line_number,
            item.provider,
            item.endpoint.value,
            item.model,
            item.request_json,
            item.metadata_json,
        )


# --- the same rules in pydantic, for --pydantic: TypedDicts + TypeAdapter (faster than BaseModel here) ---

Text = Annotated[str, Field(min_length=1)]
Ident = Annotated[str, Field(min_length=1, max_length=512)]
Positive = Annotated[int, Field(ge=1)]
Temperature = Annotated[float, Field(ge=0, le=2)]
_OPEN = ConfigDict(extra="allow", strict=True)
_CLOSED = ConfigDict(extra="forbid", strict=True)


class _Message(TypedDict):
    __pydantic_config__ = _OPEN  # type: ignore[misc]
    role: Text
    content: NotRequired[str | list[Any] | None]


class _AnthropicMessage(TypedDict):
    __pydantic_config__ = _OPEN  # type: ignore[misc]
    role: Literal["user", "assistant"]
    content: str | list[Any]


class _Body(TypedDict):
    __pydantic_config__ = _OPEN  # type: ignore[misc]
    model: Text
    max_tokens: NotRequired[Positive]
    temperature: NotRequired[Temperature]
    stream: NotRequired[Literal[False] | None]


class _ChatBody(_Body):
    messages: Annotated[list[_Message], Field(min_length=1)]


class _InputBody(_Body):
    input: str | Annotated[list[Any], Field(min_length=1)]


class _MessagesBody(_Body):
    messages: Annotated[list[_AnthropicMessage], Field(min_length=1)]
    system: NotRequired[str | list[Any]]


class _OpenAILine(TypedDict):
    __pydantic_config__ = _CLOSED  # type: ignore[misc]
    custom_id: Ident
    method: Literal["POST"]
    url: Literal["/v1/chat/completions", "/v1/embeddings", "/v1/responses"]
    body: dict[str, Any]


class _AnthropicLine(TypedDict):
    __pydantic_config__ = _CLOSED  # type: ignore[misc]
    custom_id: Ident
    params: _MessagesBody


class _SimpleLine(TypedDict):
    __pydantic_config__ = _CLOSED  # type: ignore[misc]
    id: NotRequired[Ident]
    prompt: NotRequired[Text]
    messages: NotRequired[Annotated[list[_Message], Field(min_length=1)]]
    model: NotRequired[Text]
    system: NotRequired[str]
    max_tokens: NotRequired[Positive]
    temperature: NotRequired[Temperature]
    provider: NotRequired[Text]
    metadata: NotRequired[dict[str, Any]]


def pydantic_validator() -> Callable[[dict[str, Any]], object]:
    """The line checks done with pydantic (``validate_python`` on the parsed dict); the adapters are built
    here, when ``--pydantic`` asks for them, not on import."""
    anthropic, openai, simple = (
        TypeAdapter(_AnthropicLine),
        TypeAdapter(_OpenAILine),
        TypeAdapter(_SimpleLine),
    )
    bodies: dict[str, TypeAdapter[Any]] = {
        "/v1/chat/completions": TypeAdapter(_ChatBody),
        "/v1/embeddings": TypeAdapter(_InputBody),
        "/v1/responses": TypeAdapter(_InputBody),
    }

    def validate(obj: dict[str, Any]) -> object:
        if "params" in obj:
            return anthropic.validate_python(obj)
        if "body" in obj:
            line = openai.validate_python(obj)
            return bodies[line["url"]].validate_python(line["body"])
        return simple.validate_python(obj)

    return validate


def table_validator() -> Callable[[dict[str, Any]], object]:
    """batchrunner's field checks alone (no JobSpec, no serialisation), as ``build_job`` runs them."""
    from batchrunner.manifest.checks import ANTHROPIC_LINE, BODIES, OPENAI_LINE, SIMPLE_LINE, check_fields

    def validate(obj: dict[str, Any]) -> object:
        if "params" in obj:
            return check_fields(obj, ANTHROPIC_LINE) + check_fields(
                obj["params"], BODIES["/v1/messages"], "params."
            )
        if "body" in obj:
            return check_fields(obj, OPENAI_LINE) + check_fields(obj["body"], BODIES[obj["url"]], "body.")
        return check_fields(obj, SIMPLE_LINE)

    return validate


def _each(validate: Callable[[dict[str, Any]], object], objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        validate(obj)


def bench_checks(path: Path, repeat: int) -> None:
    """The field checks alone, on already-parsed lines: the table-driven checker vs strict pydantic."""
    objs = [obj for _, obj in plain_json(path)]
    n = len(objs)
    for name, validate in (
        ("checks: batchrunner table", table_validator()),
        ("checks: pydantic", pydantic_validator()),
    ):
        rate = best_rate(n, repeat, lambda validate=validate: _each(validate, objs))  # type: ignore[misc]
        print(f"{name:34s} {rate:12,.0f} lines/s  {1e6 / rate:6.2f} us/line")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pydantic", action="store_true", help="also compare the checks with pydantic")
    args = parser.parse_args()
    options = ManifestOptions(default_model="gpt-4o-mini")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        size = write_file(path, args.lines)
        print(f"{args.lines:,} lines, {size / args.lines:.0f} bytes/line on average\n")
        results = {
            "json.loads": best_rate(args.lines, args.repeat, lambda: sum(1 for _ in plain_json(path))),
            "iter_manifest": best_rate(
                args.lines, args.repeat, lambda: sum(1 for _ in iter_manifest(path, options))
            ),
            "baseline submit": best_rate(args.lines, args.repeat, lambda: insert_all(baseline_rows(path))),
            "manifest submit": best_rate(
                args.lines, args.repeat, lambda: insert_all(manifest_rows(path, options))
            ),
        }
        for name, rate in results.items():
            print(f"{name:34s} {rate:12,.0f} lines/s  {1e6 / rate:6.2f} us/line")
        ratio = results["iter_manifest"] / results["json.loads"]
        submit_ratio = results["manifest submit"] / results["baseline submit"]
        print(f"\niter_manifest / json.loads: {ratio:.0%}")
        print(f"manifest submit / baseline submit: {submit_ratio:.0%}")
        if args.pydantic:
            print()
            bench_checks(path, args.repeat)


if __name__ == "__main__":
    main()
