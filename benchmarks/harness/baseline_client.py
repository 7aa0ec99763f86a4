"""The baseline: a bare asyncio loop over the OpenAI SDK, what a careful script without batchrunner does.

    python -m harness.baseline_client --manifest FILE --base-url URL --concurrency N [--retries K] --out F

``openai.AsyncOpenAI(base_url=..., api_key=..., max_retries=0)``, an ``asyncio.Semaphore(concurrency)`` and
one task per job calling ``client.chat.completions.create(**body)`` with the ``body`` of the same manifest
line; answers are kept in a list and written to ``F.answers.jsonl`` at the end (no database, no
durability), its timings to ``F``. With ``--retries K`` a failed call is retried inside the semaphore (the
slot is held while sleeping, as the SDK's own retries do): a 429 sleeps its ``retry-after-ms`` (else
``retry-after`` seconds, else 1 s); any other ``APIStatusError`` >= 500, 408, 409 or an
``APIConnectionError`` sleeps ``uniform(0, min(8, 0.5 * 2 ** (attempt - 1)))`` s (full jitter); other
errors fail the job; at most ``K`` retries. It imports no batchrunner code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.paths import API_KEY


def retry_delay(exc: Exception, attempt: int, rng: random.Random) -> float | None:
    """The baseline's own simple retry rule (module docstring); ``None``: do not retry."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            headers = exc.response.headers
            with contextlib.suppress(TypeError, ValueError):
                if headers.get("retry-after-ms") is not None:
                    return float(headers["retry-after-ms"]) / 1000
                if headers.get("retry-after") is not None:
                    return float(headers["retry-after"])
            return 1.0
        if exc.status_code < 500 and exc.status_code not in (408, 409):
            return None
    elif not isinstance(exc, openai.APIConnectionError):
        return None
    return rng.uniform(0, min(8.0, 0.5 * 2 ** (attempt - 1)))


@dataclass
class Tally:
    """What the loop saw: every attempt's start and end, the answered ones, errors by class."""

    answers: list[str | None] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    ok_starts: list[float] = field(default_factory=list)
    ok_ends: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def report(self, jobs: int) -> dict[str, Any]:
        self.starts.sort()
        return {
            "jobs": jobs,
            "succeeded": len(self.answers),
            "failed": jobs - len(self.answers),
            "attempts": len(self.starts),
            "errors": self.errors,
            "span_s": (max(self.ends) - self.starts[0]) if self.starts else None,
            "starts": self.starts,
            "ok_starts": self.ok_starts,
            "ok_ends": self.ok_ends,
        }


async def one_job(client: Any, body: dict[str, Any], retries: int, tally: Tally, rng: random.Random) -> None:
    """One job's attempts (the caller holds the semaphore)."""
    import openai

    for attempt in range(1, retries + 2):
        started = time.time()
        tally.starts.append(started)
        try:
            completion = await client.chat.completions.create(**body)
        except openai.OpenAIError as exc:
            tally.ends.append(time.time())
            name = type(exc).__name__
            tally.errors[name] = tally.errors.get(name, 0) + 1
            delay = retry_delay(exc, attempt, rng) if attempt <= retries else None
            if delay is None:
                return
            await asyncio.sleep(delay)
            continue
        tally.ends.append(time.time())
        tally.ok_starts.append(started)
        tally.ok_ends.append(tally.ends[-1])
        tally.answers.append(completion.choices[0].message.content)
        return


async def run_all(args: argparse.Namespace, bodies: list[dict[str, Any]]) -> Tally:
    import openai

    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=API_KEY, max_retries=0)
    semaphore = asyncio.Semaphore(args.concurrency)
    rng = random.Random()
    tally = Tally()

    async def limited(body: dict[str, Any]) -> None:
        async with semaphore:
            await one_job(client, body, args.retries, tally, rng)

    await asyncio.gather(*(limited(body) for body in bodies))
    await client.close()
    return tally


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.baseline_client")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.manifest, "rb") as stream:
        bodies = [json.loads(line)["body"] for line in stream if line.strip()]
    tally = asyncio.run(run_all(args, bodies))
    with open(Path(args.out).with_suffix(".answers.jsonl"), "w") as out:
        out.writelines(json.dumps(answer) + "\n" for answer in tally.answers)
    Path(args.out).write_text(json.dumps(tally.report(len(bodies))))


if __name__ == "__main__":
    main()
