"""``batchrunner estimate``, ``run --dry-run`` and ``submit``'s one-line estimate, through the real CLI.

The figures are checked against hand computations (comments); "nothing sent" against the fake server's
books and "nothing queued" against the database file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.database import count, query
from helpers.manifests import write_lines
from helpers.running import cli

from batchrunner.fakeserver.testing import ThreadedFakeServer


def _manifest(tmp_path: Path) -> Path:
    lines: list[dict[str, Any]] = [
        # simple lines to openai: "user" + 40 bytes = 44 bytes -> 11 + 4 + 3 = 18 tokens in; 100 out at most
        *({"id": f"o{i}", "prompt": "x" * 40, "model": "gpt-4o-mini", "max_tokens": 100} for i in range(6)),
        # Anthropic: "user" + 96 bytes -> 25 + 4 + 3 = 32 in; 200 out at most
        *(
            {
                "custom_id": f"a{i}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 200,
                    "messages": [{"role": "user", "content": "y" * 96}],
                },
            }
            for i in range(2)
        ),
        # a model without a price: 8 bytes + "user" -> 3 + 4 + 3 = 10 in; no cap: 1,024
        {"id": "l1", "prompt": "z" * 8, "model": "my-llama"},
    ]
    return write_lines(tmp_path / "est.jsonl", lines)


def test_estimate_of_a_file_matches_the_hand_computation(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli("estimate", str(_manifest(tmp_path)), "--rpm", "30", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    models = {m["model"]: m for m in document["models"]}
    assert (models["gpt-4o-mini"]["jobs"], models["gpt-4o-mini"]["input_tokens"]) == (6, 108)
    assert models["gpt-4o-mini"]["max_output_tokens"] == 600
    assert models["gpt-4o-mini"]["expected_output_tokens"] == 300  # half: no answers yet
    # gpt-4o-mini: 108 x 0.15 + 300 x 0.60 = 16.2 + 180 = 196.2 per 1M; batch half
    assert models["gpt-4o-mini"]["list_cost_expected_usd"] == "0.0001962"
    assert models["gpt-4o-mini"]["batch_cost_expected_usd"] == "0.0000981"
    # claude-haiku-4-5: 64 x 1.00 + 200 x 5.00 = 1,064 per 1M; at most 64 + 2,000 = 2,064
    assert models["claude-haiku-4-5"]["list_cost_expected_usd"] == "0.001064"
    assert models["claude-haiku-4-5"]["list_cost_max_usd"] == "0.002064"
    assert models["my-llama"]["list_cost_expected_usd"] is None
    assert document["unpriced_models"] == ["openai/my-llama"]
    assert document["cost_expected_usd"] == "0.0012602"  # 196.2 + 1,064
    # openai: 7 jobs at 30 rpm = 14 s; anthropic 2 at 30 rpm = 4 s (no tpm, no latency known)
    assert {t["provider"]: t["seconds"] for t in document["times"]} == {"anthropic": 4.0, "openai": 14.0}
    assert not db.exists()  # nothing queued, no database made

    monkeypatch.chdir(tmp_path)
    text = cli("estimate", "est.jsonl", "--mode", "batch")
    assert text.exit_code == 0, text.stderr
    assert "every job at the batch price" in text.stdout
    assert "not counted, no price: openai/my-llama" in text.stdout
    assert max(len(line) for line in text.stdout.splitlines()) <= 80


def test_dry_run_sends_nothing_and_queues_nothing(tmp_path: Path, db: Path) -> None:
    manifest = _manifest(tmp_path)
    with ThreadedFakeServer() as server:
        result = cli("run", str(manifest), "--base-url", server.openai_base_url, "--dry-run")
        assert result.exit_code == 0, result.stderr
        assert "dry run" in result.stdout and "$0.0013" in result.stdout  # 0.0012602, as above
        assert server.stats()["requests"] == 0
    assert not db.exists()


def test_submit_prints_an_estimate_and_estimate_run_learns_from_answers(tmp_path: Path, db: Path) -> None:
    first = write_lines(
        tmp_path / "jobs.jsonl", [{"id": f"j{i}", "prompt": f"say {i}", "max_tokens": 500} for i in range(8)]
    )
    submitted = cli("submit", str(first), "--provider", "fake")
    assert submitted.exit_code == 0, submitted.stderr
    assert "estimate: ~" in submitted.stderr and "details: batchrunner estimate" in submitted.stderr
    ran = cli("run", "--provider", "fake", "--no-progress")
    assert ran.exit_code == 0, ran.stderr
    # four more jobs in the same run: the expected output now comes from the eight answers
    more = write_lines(
        tmp_path / "more.jsonl", [{"id": f"k{i}", "prompt": f"say {i}", "max_tokens": 500} for i in range(4)]
    )
    assert cli("submit", str(more), "--run", "jobs", "--provider", "fake").exit_code == 0
    [(answers, output)] = query(db, "SELECT count(*), sum(output_tokens) FROM results")
    assert answers == 8
    result = cli("estimate", "--run", "jobs", "--json")
    assert result.exit_code == 0, result.stderr
    [model] = json.loads(result.stdout)["models"]
    assert model["jobs"] == 4 == count(db) - answers
    assert model["expected_output_from"] == "answers"
    assert model["expected_output_tokens"] == round(output / answers * 4)
