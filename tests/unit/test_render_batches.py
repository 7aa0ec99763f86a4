"""``status`` text of a run with provider batches: within 80 columns, every batch of a few, the live ones
and a count of the rest of many, the jobs batches hold apart from those in flight."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from batchrunner.api.reading import StatusReport
from batchrunner.cli.render import render_status, status_json
from batchrunner.models import BatchesSummary, BatchInfo, BatchState, RunStats
from batchrunner.store.insights import RunInsights

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _batch(n: int, state: BatchState, **values: object) -> BatchInfo:
    fields: dict[str, object] = {
        "id": n, "run_id": 1, "local_id": f"br{n:012x}", "provider": "openai", "endpoint": "/v1/responses",
        "model": "gpt-4o-mini-2024-07-18", "state": state, "requests": 50_000, "size_bytes": 1,
        "remote_id": f"batch_{n:032x}", "remote_status": "in_progress" if state.is_live else "completed",
        "succeeded": 49_123, "errored": 12_345, "expired": 0, "canceled": 0,
        "created_at": NOW - timedelta(hours=n, minutes=5),
    }  # fmt: skip
    fields.update(values)
    return BatchInfo(**fields)  # type: ignore[arg-type]


def _wide(text: str) -> list[str]:
    """Lines over 80 columns, but for the attempts and runner lines, which are not the batches'."""
    return [line for line in text.splitlines() if len(line) > 80 and not line.startswith("  attempts")]


def _report(batches: list[BatchInfo], *, batched: int) -> StatusReport:
    by_state = {"pending": 10, "claimed": 0, "running": 3, "batched": batched, "succeeded": 1_000_000,
                "failed": 7, "cancelled": 0}  # fmt: skip
    stats = RunStats(
        run="reviews", total=sum(by_state.values()), by_state=by_state, attempts=1_000_020,
        attempts_this_try=1_000_020, input_tokens=9, output_tokens=9, cached_tokens=0, cost_usd=3.0,
        priced_results=1_000_000, unpriced_results=0, first_activity=None, last_activity=None,
    )  # fmt: skip
    insights = RunInsights(
        finished_recently=0, window_s=30, throughput_per_s=0, resent_after_interruption=0, possibly_billed=0,
        runners=[],
    )  # fmt: skip
    summary = BatchesSummary(
        batches=batches, batch_results=900_000, batch_cost_usd=2.0, all_results=1_000_000, all_cost_usd=3.0
    ) if batches else BatchesSummary(all_results=1_000_000, all_cost_usd=3.0)  # fmt: skip
    return StatusReport(stats=stats, insights=insights, batches=summary)


def test_a_few_batches_are_each_shown_within_80_columns() -> None:
    batches = [
        _batch(1, BatchState.DONE),
        _batch(2, BatchState.SUBMITTED),
        _batch(3, BatchState.PREPARING, remote_id=None, remote_status=None, provider="anthropic", model=None),
    ]
    text = render_status(_report(batches, batched=100_000), now=NOW)
    lines = text.splitlines()
    assert _wide(text) == []
    assert "  in provider batches 100,000" in text and "running 3" in text
    assert "3 provider batch(es), 2 live" in text
    assert all(batch.local_id in text for batch in batches)
    assert f"      provider id {batches[0].remote_id}" in lines
    assert "      provider id - (not submitted yet)" in lines
    live = "    br000000000002  submitted (in_progress)  age 2h05m  openai/gpt-4o-mini-"
    assert any(line.startswith(live) and line.endswith("...") for line in lines)  # the model cut short
    assert "    br000000000003  preparing  age 3h05m  anthropic" in lines
    assert "  batch price  900,000 of 1,000,000 result(s), $2.0000 of $3.0000 (67%)" in lines


def test_many_batches_show_the_live_ones_and_count_the_rest() -> None:
    batches = [_batch(n, BatchState.DONE) for n in range(1, 30)] + [
        _batch(30, BatchState.SUBMITTED),
        _batch(31, BatchState.FAILED, remote_status="failed"),
    ]
    text = render_status(_report(batches, batched=50_000), now=NOW)
    assert _wide(text) == []
    assert batches[-2].local_id in text and batches[0].local_id not in text
    assert "    and 30 more (done 29, failed 1)" in text.splitlines()


def test_a_run_without_batches_shows_none_and_json_lists_every_batch() -> None:
    text = render_status(_report([], batched=0), now=NOW)
    assert "batch" not in text
    batches = [_batch(n, BatchState.DONE) for n in range(1, 10)]
    document = json.loads(status_json(_report(batches, batched=0)))
    assert [b["local_id"] for b in document["batches"]] == [b.local_id for b in batches]
    assert document["batch_price"]["cost_share"] == round(2 / 3, 4)
    assert document["states"]["batched"] == 0
