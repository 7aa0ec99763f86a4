"""The yardstick of issue 11: a bare aiohttp loop, the fastest a client of one core can be here.

    python -m harness.aiohttp_client --manifest FILE --base-url URL --concurrency N --out F

One ``aiohttp.ClientSession`` (a ``TCPConnector`` with ``limit=N``, keep-alive), an
``asyncio.Semaphore(N)``, one task per manifest line POSTing its ``body`` to ``URL/chat/completions`` with a
bearer key; each answer's text is kept in a list and written to ``F.answers.jsonl`` at the end. No retries,
no database, no validation beyond the status: what batchrunner must come close to. It imports no
batchrunner code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from harness.paths import API_KEY


async def drain(
    bodies: list[object], base_url: str, concurrency: int
) -> tuple[list[str | None], dict[str, int]]:
    import aiohttp

    answers: list[str | None] = [None] * len(bodies)
    statuses: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = base_url.rstrip("/") + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(index: int, body: object) -> None:
            async with gate, session.post(url, json=body) as response:
                text = await response.text()
                statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
                if response.status == 200:
                    answers[index] = text

        await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))
    return answers, statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.time()
    bodies = [json.loads(line)["body"] for line in args.manifest.read_text().splitlines() if line.strip()]
    answers, statuses = asyncio.run(drain(bodies, args.base_url, args.concurrency))
    with args.out.with_name(args.out.name + ".answers.jsonl").open("w") as out:
        out.writelines(json.dumps(answer) + "\n" for answer in answers)
    ok = sum(answer is not None for answer in answers)
    args.out.write_text(json.dumps({"ok": ok, "statuses": statuses, "span_s": time.time() - start}))


if __name__ == "__main__":
    main()
