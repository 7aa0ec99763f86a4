"""Limits a run must respect: the provider's rate limits (enforced by the fake server) and ``--max-cost``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from helpers.database import snapshot
from helpers.fake_server_fixtures import StartFakeServer
from helpers.invariants import check_invariants, reference_answers
from helpers.manifests import prompts, write_manifest
from helpers.running import settings_for

from batchrunner import api
from batchrunner.config import Settings
from batchrunner.policy.pricing import FAKE_MODEL
from batchrunner.policy.tokens import estimate_tokens


@pytest.mark.slow  # seconds of real-time rate windows
async def test_server_enforced_limits_give_at_most_one_percent_429s(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    """RPM and TPM enforced by the server over 1 s windows; the same limits given to the run keep it under
    them: at most 1% of the calls are refused, and every job succeeds."""
    jobs = prompts(120, "limit")
    rpm, tpm = 6000, 180_000  # 100 requests or 3,000 tokens per second: TPM binds (~60 tokens a call)
    server = fake_server(latency_ms=5, rpm=rpm, tpm=tpm, retry_after_s=0.2)
    db = tmp_path / "limit.db"
    manifest = write_manifest(tmp_path / "limit.jsonl", jobs, max_tokens=50)
    settings = settings_for(server.openai_base_url, db, concurrency=16, rpm=rpm, tpm=tpm)

    report = await api.run(manifest, settings=settings)

    assert report.exit_code == 0
    stats = server.stats()
    refused = stats["by_status"].get("429", 0)
    assert refused <= 0.01 * stats["requests"], stats
    assert stats["limit_violations"] == refused
    assert stats["requests"] >= len(jobs)
    check_invariants(snapshot(db), stats, ids=jobs, reference=reference_answers(fake_server, db))


def _worst_case(db: Path, custom_id: str, settings: Settings) -> Decimal:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        endpoint, body = conn.execute(
            "SELECT endpoint, request_json FROM jobs WHERE custom_id = ?", (custom_id,)
        ).fetchone()
    finally:
        conn.close()
    estimate = estimate_tokens(endpoint, json.loads(body))
    worst = settings.prices.worst_case_cost(FAKE_MODEL, estimate.prompt_tokens, estimate.output_tokens)
    assert worst is not None
    return worst


def _spent(db: Path) -> Decimal:
    snap = snapshot(db)
    return sum((Decimal(str(r[0]["cost_usd"])) for r in snap.results.values() if r), Decimal(0))


async def test_max_cost_stops_dispatch_before_the_cap(tmp_path: Path) -> None:
    """``--max-cost`` with the fake provider (fake-model is priced): the run stops (exit 3) before spent plus
    the next call's worst case would pass the cap, jobs left pending with no attempt used; a resume with
    a higher cap finishes them."""
    jobs = prompts(40, "cost")
    db = tmp_path / "cost.db"
    manifest = write_manifest(tmp_path / "cost.jsonl", jobs, model=FAKE_MODEL, max_tokens=1000)
    await api.submit(manifest, settings=api.settings(db=str(db), provider="fake"))
    probe = settings_for(None, db, provider="fake")
    worst = _worst_case(db, "cost-000", probe)  # about $0.0006: 1,000 output tokens at $0.60/M
    cap = worst + Decimal("0.0001")  # room for the worst case plus a handful of real (tiny) calls
    settings = settings_for(None, db, provider="fake", concurrency=1, max_cost_usd=cap)

    report = await api.run(settings=settings)

    assert report.exit_code == 3 and "budget reached" in (report.stopped or "")
    snap = snapshot(db)
    spent = _spent(db)
    done = snap.in_state("succeeded")
    assert 1 <= len(done) < len(jobs)
    assert spent <= cap  # never past the cap ...
    next_job = min(snap.in_state("pending"))
    assert spent + _worst_case(db, next_job, probe) > cap  # ... and stopped only when the next could pass it
    assert all(snap.jobs[cid]["attempts"] == 0 for cid in snap.in_state("pending"))
    check_invariants(snap, None, ids=jobs, reference=None, stopped=True)

    # eight workers: each call reserves its worst case, so the cap holds with calls in flight; and a call
    # that does not fit *while others are in flight* waits for them to settle instead of stopping the run
    (tmp_path / "batchrunner.toml").write_text("[providers.fake]\nfake_latency_ms = 20\n")  # overlap
    cap = spent + worst + Decimal("0.0001")
    report = await api.run(settings=settings_for(None, db, provider="fake", concurrency=8, max_cost_usd=cap))
    assert report.exit_code == 3
    snap, spent_now = snapshot(db), _spent(db)
    assert len(snap.in_state("succeeded")) > len(done) + 1
    assert spent_now <= cap
    assert spent_now + _worst_case(db, min(snap.in_state("pending")), probe) > cap

    report = await api.run(settings=settings_for(None, db, provider="fake", max_cost_usd=Decimal(1)))
    assert report.exit_code == 0
    assert snapshot(db).states() == {"succeeded": len(jobs)}
