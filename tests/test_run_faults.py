"""The run engine against provider faults, end to end: the real SDKs over HTTP to the fake server.

Each job carries its own fault plan as a ``[[fault:PLAN]]`` directive in its prompt, so one run exercises
many error classes at once and every job's books are its own. The engine runs in-process through
``api.run`` with settings resolved as ``batchrunner run`` resolves them; signals and kills are in
``test_run_crash.py``. After every run the invariants of docs/reliability.md are checked (run_helpers).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_server_fixtures import StartFakeServer
from run_helpers import (
    Snapshot,
    check_invariants,
    prompt_of,
    prompts,
    reference_answers,
    settings_for,
    snapshot,
    write_manifest,
)

from batchrunner import api
from batchrunner.fakeserver import FaultKind

# plan -> (the error class recorded for its failed attempts, calls the job takes, final state)
OPENAI_PLANS: dict[str, tuple[str | None, int, str]] = {
    "ok": (None, 1, "succeeded"),
    "429": ("rate_limited", 2, "succeeded"),
    "429-date": ("rate_limited", 2, "succeeded"),
    "529": ("overloaded", 2, "succeeded"),
    "500": ("transient", 2, "succeeded"),
    "502": ("transient", 2, "succeeded"),
    "503": ("transient", 2, "succeeded"),
    "504": ("transient", 2, "succeeded"),
    "408": ("transient", 2, "succeeded"),
    "409": ("transient", 2, "succeeded"),
    "reset": ("transient", 2, "succeeded"),
    "truncate": ("transient", 2, "succeeded"),
    "hang": ("timeout", 2, "succeeded"),
    "bad-json": ("invalid_response", 2, "succeeded"),
    "html": ("invalid_response", 2, "succeeded"),
    "500,500": ("transient", 3, "succeeded"),  # fails k=2 times, succeeds on try 3
    "*500": ("transient", 3, "failed"),  # attempts exhausted (max_attempts=3)
    "*400": ("permanent", 1, "failed"),  # a poison job fails after one call
    "*404": ("permanent", 1, "failed"),
    "*422": ("permanent", 1, "failed"),
}


def _check_job(
    snap: Snapshot, stats: dict[str, Any], cid: str, expected: tuple[str | None, int, str]
) -> None:
    error_class, calls, state = expected
    job, attempts = snap.jobs[cid], snap.attempts[cid]
    assert job["state"] == state, (cid, job["state"], job["last_error"])
    assert stats["attempts"][prompt_of(job)] == calls, cid
    assert job["attempts"] == calls == len(attempts), cid
    assert [a["number"] for a in attempts] == list(range(1, calls + 1))
    failed = attempts if state == "failed" else attempts[:-1]
    assert [a["error_class"] for a in failed] == [error_class] * len(failed), cid
    if state == "succeeded":
        assert attempts[-1]["error_class"] is None and attempts[-1]["status_code"] == 200
    else:
        assert job["last_error_class"] == error_class


async def test_every_openai_error_class(fake_server: StartFakeServer, tmp_path: Path) -> None:
    """Each fault once (or as planned): retried, failed at once, or exhausted, each attempt recorded."""
    plans = list(OPENAI_PLANS)
    jobs = prompts(len(plans), "err", dict(enumerate(plans)))
    server = fake_server(latency_ms=3, retry_after_s=0.2)
    manifest = write_manifest(tmp_path / "errors.jsonl", jobs)
    db = tmp_path / "errors.db"
    settings = settings_for(server.openai_base_url, db, concurrency=8, timeout_s=0.5, max_attempts=3)

    report = await api.run(manifest, settings=settings)

    assert report.exit_code == 1 and report.stopped is None
    snap, stats = snapshot(db), server.stats()
    by_plan = dict(zip(plans, jobs, strict=True))
    for plan, cid in by_plan.items():
        _check_job(snap, stats, cid, OPENAI_PLANS[plan])
    assert snap.attempts[by_plan["hang"]][0]["possibly_billed"] == 1  # sent, no answer: may be billed
    assert snap.attempts[by_plan["500"]][0]["status_code"] == 500
    check_invariants(
        snap, stats, ids=jobs, reference=reference_answers(fake_server, db), in_flight_at_kills=0
    )


async def test_no_usage_answer_is_kept_with_zero_tokens(fake_server: StartFakeServer, tmp_path: Path) -> None:
    """A 200 without usage is an answer (paid for): stored once, tokens 0, never asked again."""
    jobs = prompts(2, "nousage", {0: "no-usage"})
    server = fake_server()
    db = tmp_path / "nousage.db"
    report = await api.run(
        write_manifest(tmp_path / "n.jsonl", jobs), settings=settings_for(server.openai_base_url, db)
    )
    assert report.exit_code == 0
    snap, stats = snapshot(db), server.stats()
    reference = reference_answers(fake_server, db)
    no_usage = snap.results["nousage-000"][0]
    assert no_usage["output_text"] == reference["nousage-000"].text
    assert (no_usage["input_tokens"], no_usage["output_tokens"]) == (0, 0)
    assert stats["answers"] == dict.fromkeys(jobs.values(), 1)
    check_invariants(snap, stats, ids=jobs, reference={"nousage-001": reference["nousage-001"]})


async def test_anthropic_error_classes(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Anthropic SDK path: 529 overloaded, 429, 500, a poison 400, through the messages route."""
    plans = {"ok": (None, 1, "succeeded"), "529": ("overloaded", 2, "succeeded"),
             "429": ("rate_limited", 2, "succeeded"), "500": ("transient", 2, "succeeded"),
             "*400": ("permanent", 1, "failed")}  # fmt: skip
    jobs = prompts(len(plans), "ant", dict(enumerate(plans)))
    server = fake_server(latency_ms=3, retry_after_s=0.2)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    db = tmp_path / "ant.db"
    manifest = write_manifest(tmp_path / "ant.jsonl", jobs, model="claude-3-5-haiku-latest", max_tokens=64)
    settings = settings_for(None, db, provider="anthropic", concurrency=4)

    report = await api.run(manifest, settings=settings)

    assert report.exit_code == 1
    snap, stats = snapshot(db), server.stats()
    assert stats["by_route"] == {"/v1/messages": stats["requests"]}
    for plan, cid in zip(plans, jobs, strict=True):
        _check_job(snap, stats, cid, plans[plan])
    check_invariants(snap, stats, ids=jobs, reference=reference_answers(fake_server, db))


async def test_retry_after_is_honoured(fake_server: StartFakeServer, tmp_path: Path) -> None:
    """After a 429 with Retry-After: 1 s the server's books show no second attempt for at least 1 s."""
    jobs = prompts(1, "wait", {0: "429"})
    key = next(iter(jobs.values()))
    server = fake_server(retry_after_s=1.0)
    samples: list[tuple[float, float, int]] = []  # (asked at, answered at, attempts of the prompt)
    done = threading.Event()

    def watch() -> None:  # the server's books, sampled every few ms from another thread
        while not done.is_set():
            asked = time.monotonic()
            count = server.stats().get("attempts", {}).get(key, 0)
            samples.append((asked, time.monotonic(), count))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        db = tmp_path / "wait.db"
        report = await api.run(
            write_manifest(tmp_path / "w.jsonl", jobs), settings=settings_for(server.openai_base_url, db)
        )
    finally:
        done.set()
        watcher.join()
    assert report.exit_code == 0
    # a lower bound of the gap between the two arrivals: the first arrived before the answer to the first
    # sample that saw it; the second after the question of the last sample that did not see it
    first_seen = min(answered for _, answered, n in samples if n >= 1)
    second_unseen = max(asked for asked, _, n in samples if n < 2)
    assert second_unseen - first_seen >= 1.0
    snap = snapshot(db)
    first, second = snap.attempts["wait-000"]
    assert (first["status_code"], first["error_class"]) == (429, "rate_limited")
    assert second["started_at"] > first["finished_at"]
    check_invariants(snap, server.stats(), ids=jobs, reference=reference_answers(fake_server, db))


@pytest.mark.parametrize(
    ("provider", "server_fields", "error_text"),
    [
        pytest.param("openai", {"api_key": "sk-the-right-key-only"}, "API key", id="401-bad-key"),
        pytest.param("openai", {"fault_rates": {FaultKind.FORBIDDEN: 1.0}}, "not supported", id="403"),
        pytest.param("openai", {"fault_rates": {FaultKind.QUOTA: 1.0}}, "quota", id="quota"),
        pytest.param("anthropic", {"fault_rates": {FaultKind.CREDIT: 1.0}}, "credit balance", id="credit"),
        pytest.param("anthropic", {"api_key": "sk-ant-right-key-only"}, "x-api-key", id="anthropic-401"),
    ],
)
async def test_run_stopping_errors_stop_after_at_most_concurrency_calls(
    fake_server: StartFakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    server_fields: dict[str, Any],
    error_text: str,
) -> None:
    """Auth and quota errors: exit 3, at most ``concurrency`` calls, every job pending, no attempt used."""
    concurrency = 4
    jobs = prompts(24, "stop")
    server = fake_server(latency_ms=2, **server_fields)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    db = tmp_path / "stop.db"
    base_url = server.openai_base_url if provider == "openai" else None
    settings = settings_for(base_url, db, concurrency=concurrency, provider=provider)
    model = "gpt-4o-mini" if provider == "openai" else "claude-3-5-haiku-latest"

    report = await api.run(write_manifest(tmp_path / "stop.jsonl", jobs, model=model), settings=settings)

    assert report.exit_code == 3 and report.stopped is not None and error_text in report.stopped
    stats = server.stats()
    assert 1 <= stats["requests"] <= concurrency
    snap = snapshot(db)
    assert snap.states() == {"pending": len(jobs)}
    assert all(job["attempts"] == 0 for job in snap.jobs.values())
    check_invariants(snap, stats, ids=jobs, reference=None, stopped=True)


async def test_401_mid_run_leaves_jobs_pending_then_resumes(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    """A 401 after some successes: exit 3, the rest pending with attempts refunded; a resume finishes."""
    jobs = prompts(16, "auth", {8: "401"})  # the 9th job's first call is refused, later ones pass
    server = fake_server(latency_ms=20)
    db = tmp_path / "auth.db"
    manifest = write_manifest(tmp_path / "auth.jsonl", jobs)
    settings = settings_for(server.openai_base_url, db, concurrency=2)

    report = await api.run(manifest, settings=settings)

    assert report.exit_code == 3 and "Incorrect API key" in (report.stopped or "")
    snap, stats = snapshot(db), server.stats()
    succeeded, pending = snap.in_state("succeeded"), snap.in_state("pending")
    assert succeeded and pending and succeeded | pending == set(jobs)
    assert "auth-008" in pending and snap.jobs["auth-008"]["attempts"] == 0
    assert [a["error_class"] for a in snap.attempts["auth-008"]] == ["run_stopping"]
    assert all(snap.jobs[cid]["attempts"] == 0 for cid in pending)
    assert stats["requests"] <= len(succeeded) + 2  # after the 401, at most the other call in flight
    check_invariants(snap, stats, ids=jobs, reference=None, stopped=True)

    report = await api.run(settings=settings)

    assert report.exit_code == 0
    snap, stats = snapshot(db), server.stats()
    assert stats["duplicates"] == 0
    assert snap.jobs["auth-008"]["attempts"] == 1 and len(snap.attempts["auth-008"]) == 2
    check_invariants(snap, stats, ids=jobs, reference=reference_answers(fake_server, db))
