"""The pure parts of batch mode: the fake server's batch timeline (time passed in, never slept) and the
Anthropic request body built from a file of lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrunner.fakeserver.batchstore import Phase, Timeline
from batchrunner.providers.anthropic_batch import requests_body

# 10 lines over 10 s after 0.5 s of validating: line i is done at 0.5 + (i + 1) s; 0.5 s of finalizing.
PLAIN = Timeline(created=0.0, size=10, seconds=10.0, validate_s=0.5, finalize_s=0.5)
EXPIRING = Timeline(created=0.0, size=10, seconds=10.0, validate_s=0.5, finalize_s=0.5, expire_fraction=0.4)
INVALID = Timeline(created=0.0, size=10, seconds=10.0, validate_s=0.5, finalize_s=0.5, invalid=True)


@pytest.mark.parametrize(
    ("timeline", "now", "cancel_at", "phase", "done"),
    [
        (PLAIN, 0.0, None, Phase.VALIDATING, 0),  # just created
        (PLAIN, 0.5, None, Phase.IN_PROGRESS, 0),  # validated, nothing done yet
        (PLAIN, 1.5, None, Phase.IN_PROGRESS, 1),  # the first line is done at 1.5
        (PLAIN, 5.9, None, Phase.IN_PROGRESS, 5),
        (PLAIN, 10.5, None, Phase.FINALIZING, 10),  # every line done, finalizing
        (PLAIN, 11.0, None, Phase.COMPLETED, 10),
        (EXPIRING, 4.4, None, Phase.IN_PROGRESS, 3),
        (EXPIRING, 4.5, None, Phase.EXPIRED, 4),  # 40% done: the batch expires
        (EXPIRING, 99.0, None, Phase.EXPIRED, 4),  # and nothing more is done
        (PLAIN, 3.5, 3.5, Phase.CANCELLING, 3),  # cancelled at 3.5: three lines were done
        (PLAIN, 3.9, 3.5, Phase.CANCELLING, 3),  # the cancel takes validate_s (0.5 s)
        (PLAIN, 9.0, 3.5, Phase.CANCELLED, 3),  # no line completes after the cancel
        (INVALID, 0.2, None, Phase.VALIDATING, 0),
        (INVALID, 0.5, None, Phase.FAILED, 0),
    ],
)
def test_a_batch_timeline(
    timeline: Timeline, now: float, cancel_at: float | None, phase: Phase, done: int
) -> None:
    assert timeline.phase(now, cancel_at) is phase
    assert timeline.done(now, cancel_at) == done


def test_when_a_batch_ends() -> None:
    assert PLAIN.ended_at() == 11.0 and EXPIRING.ended_at() == 4.5 and INVALID.ended_at() == 0.5
    assert PLAIN.ended_at(cancel_at=3.5) == 4.0
    instant = Timeline(created=0.0, size=3, seconds=0.0, validate_s=0.0, finalize_s=0.0)
    assert instant.phase(0.0) is Phase.COMPLETED and instant.done(0.0) == 3


@pytest.mark.parametrize(
    "content",
    [
        b'{"custom_id":"a","params":{}}\n',
        b'{"custom_id":"a","params":{}}\n{"custom_id":"b","params":{"x":"\xc3\xa9"}}\n',
        b'{"custom_id":"a","params":{}}',  # no newline after the last line
    ],
)
async def test_the_anthropic_body_joins_the_lines_of_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(content)
    chunks, length = await requests_body(path)
    body = b"".join([chunk async for chunk in chunks])
    assert len(body) == length
    assert json.loads(body) == {"requests": [json.loads(line) for line in content.splitlines()]}


async def test_the_anthropic_body_of_a_file_bigger_than_a_chunk(tmp_path: Path) -> None:
    lines = [
        json.dumps({"custom_id": f"id-{i}", "params": {"text": "y" * 997}}).encode() + b"\n"
        for i in range(1000)
    ]
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"".join(lines))
    chunks, length = await requests_body(path)
    parts = [chunk async for chunk in chunks]
    assert len(parts) > 3 and sum(map(len, parts)) == length
    assert [r["custom_id"] for r in json.loads(b"".join(parts))["requests"]] == [
        f"id-{i}" for i in range(1000)
    ]
