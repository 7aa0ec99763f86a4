"""Exports through ``api.export`` from a real SQLite file: manifest order, formula neutralisation, formats,
atomic writes and full disks. The ``export`` command itself is in ``cli/test_export_cli.py``."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.store_data import OUTPUTS, seed
from helpers.tmpfs import tmpfs

from batchrunner import api
from batchrunner.errors import ExportError


@pytest.fixture
async def db(tmp_path: Path) -> str:
    target = str(tmp_path / "export.db")
    await seed(target)
    return target


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


async def test_csv_is_in_manifest_order_with_formulas_neutralised(db: str, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert (
        await api.export(settings=api.settings(db=db), format="csv", output=str(target)) == len(OUTPUTS) + 1
    )
    header, *rows = read_csv(target)
    assert header[:14] == [
        "custom_id",
        "status",
        "provider",
        "model",
        "output",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
        "attempts",
        "mode",
        "latency_ms",
        "ttft_ms",
        "error",
    ]
    assert header[14:] == ["metadata.lang", "metadata.n"]
    assert [row[0] for row in rows] == [f"id-{n:03d}" for n in range(1, len(OUTPUTS) + 2)]
    outputs = [row[4] for row in rows[: len(OUTPUTS)]]
    assert outputs == [
        "'=1+2",
        "plain answer",
        "'+cmd|' /C calc'!A0",
        "'-5 degrees",
        "'@SUM(A1)",
        "'\tindented",
        'ok, "quoted"\n2',
        # plain numbers are safe, so they stay as they are ...
        "-5",
        "-0.5",
        "+3",
        "-.5e-3",
        "-2.5E+10",
        # ... and anything more than a plain number keeps the protection
        "'-1+2",
        "'-5 ",
        "'- 5",
        "'-1e",
        "'-",
        "'-inf",
    ]
    assert rows[0][1:4] == ["succeeded", "fake", "fake-model"] and rows[0][5:12] == [
        "10",
        "5",
        "2",
        "0.001",
        "1",
        "realtime",
        "12.5",
    ]
    failed = rows[-1]
    assert (
        failed[1] == "failed"
        and failed[10] == "realtime"
        and failed[13] == "permanent: 400 bad request"
        and failed[4] == ""
    )
    assert failed[5:8] == ["", "", ""]  # no result, so no token counts (not zeros)
    assert rows[2][14:] == ["en", "3"]


async def test_csv_keeps_ids_and_numeric_metadata_as_they_are(tmp_path: Path) -> None:
    """ids are written verbatim even when they look like formulas (the user joins on them); metadata
    numbers are not altered; metadata text that a spreadsheet would run is still neutralised."""
    db = str(tmp_path / "ids.db")
    ids = ['=HYPERLINK("http://x")', "-5", "+cmd", "@id", "plain"]
    metadata: list[dict[str, object]] = [
        {"score": -5},
        {"score": -0.25},
        {"score": "=1+1"},
        {"score": "-3 apples"},
        {"score": 7},
    ]
    await seed(db, outputs=["a"] * len(ids), failed=0, custom_ids=ids, metadata=metadata)
    target = tmp_path / "ids.csv"
    await api.export(settings=api.settings(db=db), format="csv", output=str(target))
    header, *rows = read_csv(target)
    assert header[-1] == "metadata.score"
    assert [row[0] for row in rows] == ids
    assert [row[-1] for row in rows] == ["-5", "-0.25", "'=1+1", "'-3 apples", "7"]


async def test_no_sanitize_keeps_cells(db: str, tmp_path: Path) -> None:
    target = tmp_path / "raw.csv"
    await api.export(settings=api.settings(db=db), format="csv", output=str(target), sanitize=False)
    assert read_csv(target)[1][4] == "=1+2"


async def test_only_filters_and_jsonl_carries_everything(db: str, tmp_path: Path) -> None:
    target = tmp_path / "ok.jsonl"
    assert await api.export(
        settings=api.settings(db=db), format="jsonl", output=str(target), only="succeeded"
    ) == len(OUTPUTS)
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["output"] for r in records] == OUTPUTS
    first = records[0]
    assert first["request"] == {"model": "fake-model"} and first["response"] == {"id": "r"}
    assert first["usage"] == {"input_tokens": 10, "output_tokens": 5, "cached_tokens": 2}
    assert first["metadata"] == {"lang": "en", "n": 1} and first["error"] is None

    failed = tmp_path / "failed.jsonl"
    assert (
        await api.export(settings=api.settings(db=db), format="jsonl", output=str(failed), only="failed") == 1
    )
    [record] = [json.loads(line) for line in failed.read_text().splitlines()]
    assert record["error"] == {"class": "permanent", "message": "400 bad request"} and record["usage"] is None


async def test_openai_batch_format(db: str, tmp_path: Path) -> None:
    target = tmp_path / "batch.jsonl"
    await api.export(settings=api.settings(db=db), format="openai-batch", output=str(target))
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert records[0]["custom_id"] == "id-001" and records[0]["response"]["status_code"] == 200
    assert records[0]["response"]["body"] == {"id": "r"} and records[0]["error"] is None
    # the seeded failure has no HTTP status recorded: there is no answer to give, so an error
    assert records[-1]["response"] is None
    assert records[-1]["error"] == {"code": "permanent", "message": "400 bad request"}
    ids = [record["id"] for record in records]
    assert all(re.fullmatch(r"batch_req_[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == len(ids)
    again = tmp_path / "again.jsonl"
    await api.export(settings=api.settings(db=db), format="openai-batch", output=str(again), only="failed")
    assert json.loads(again.read_text())["id"] == ids[-1]  # the same job, the same id, whatever the filter


async def test_export_to_dev_full_fails_cleanly(db: str) -> None:
    with pytest.raises(ExportError, match="No space left on device"):
        await api.export(settings=api.settings(db=db), format="csv", output="/dev/full")


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 64 KiB tmpfs: a real full disk."""
    with tmpfs(tmp_path / "tiny", "64k") as mount_point:
        yield mount_point


async def test_export_to_a_full_disk_leaves_no_partial_file(tmp_path: Path, full_dir: Path) -> None:
    db = str(tmp_path / "big.db")
    await seed(db, outputs=["x" * 2000] * 200, failed=0)  # ~400 KB of CSV into a 64 KiB filesystem
    (full_dir / "results.csv").write_text("previous export\n")
    with pytest.raises(ExportError, match="No space left on device"):
        await api.export(settings=api.settings(db=db), format="csv", output=str(full_dir / "results.csv"))
    assert os.listdir(full_dir) == ["results.csv"]  # no temp file left behind
    assert (full_dir / "results.csv").read_text() == "previous export\n"  # the old export is intact
