"""``status``'s timing figures against the attempts themselves: percentiles over the run within 5% (never
below, over the last minute as well), TTFT for streamed requests, and the histograms of an older database."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import prompts, write_manifest
from helpers.running import cli, status_of


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_percentiles_agree_with_the_attempts(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fake_server(latency_ms=20, jitter_ms=60, seed=3)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    manifest = write_manifest(tmp_path / "t.jsonl", prompts(120, "timing"))
    ran = cli("run", str(manifest), "--no-progress", "--concurrency", "16")
    assert ran.exit_code == 0, ran.stderr
    db = tmp_path / "batchrunner.db"
    with sqlite3.connect(db) as conn:
        latencies = [row[0] for row in conn.execute("SELECT latency_ms FROM attempts")]
    assert len(latencies) == 120
    status = status_of()
    for scope in ("run", "last_minute"):
        figures = status["latency_ms"][scope]
        assert figures["count"] == 120
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            exact = _exact(latencies, q)
            # both from histograms: a bucket's upper bound, at most 5% above the exact value, never below
            assert exact - 0.06 <= figures[name] <= exact * 1.05 + 0.1, (scope, name, exact, figures[name])
    assert status["ttft_ms"] == {"run": None, "last_minute": None}  # nothing was streamed
    assert status["throughput_last_minute_per_s"] == pytest.approx(120 / 60, abs=0.01)
    text = cli("status").stdout
    assert "latency  p50" in text and "(run)" in text and "last min 120 answered of 120 attempts" in text


def test_streamed_requests_give_ttft_percentiles(fake_server: StartFakeServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    server = fake_server(latency_ms=30, event_gap_ms=5)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    lines = [
        f'{{"id": "s{i}", "prompt": "stream {i}", "model": "gpt-4o-mini", "stream": true}}' for i in range(20)
    ]
    manifest = tmp_path / "s.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    ttft = status_of()["ttft_ms"]
    assert ttft["run"]["count"] == ttft["last_minute"]["count"] == 20
    assert 30 <= ttft["last_minute"]["p50"] <= status_of()["latency_ms"]["last_minute"]["p50"]
