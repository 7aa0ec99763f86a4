"""Runs without ``--rpm``/``--tpm`` keep to the limits the provider advertises in its headers.

``batchrunner run`` in a subprocess (the real CLI) against the fake server, which enforces its limits over
1-second windows and says them in ``x-ratelimit-limit-*`` / ``anthropic-ratelimit-*-limit`` headers on
every answer. Asserted from the server's books: refusals (429s) and the rate over the run's span, from
the server's first request to its last answer (so the start-up probe counts against the run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.database import snapshot
from helpers.fake_server_fixtures import StartFakeServer
from helpers.invariants import check_invariants
from helpers.manifests import prompts, write_manifest
from helpers.running import RunnerProcess

from batchrunner.fakeserver.testing import ThreadedFakeServer

pytestmark = pytest.mark.slow  # runner subprocesses held to real-time limits

StartRunner = Callable[..., RunnerProcess]


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[StartRunner]:
    started: list[RunnerProcess] = []

    def start(args: list[str], *, env: dict[str, str] | None = None) -> RunnerProcess:
        process = RunnerProcess(tmp_path, args, env=env, name=f"run{len(started)}")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def run_cli(
    runner: StartRunner,
    tmp_path: Path,
    server: ThreadedFakeServer,
    jobs: dict[str, str],
    *flags: str,
    anthropic: bool = False,
    max_tokens: int = 20,
) -> Path:
    """``batchrunner run FILE --db DB --no-progress FLAGS`` for ``jobs``, through the OpenAI or the
    Anthropic provider; the exit code must be 0."""
    db = tmp_path / "learn.db"
    model = "claude-3-5-haiku-latest" if anthropic else "gpt-4o-mini"
    manifest = write_manifest(tmp_path / "learn.jsonl", jobs, model=model, max_tokens=max_tokens)
    where = ["--provider", "anthropic"] if anthropic else ["--base-url", server.openai_base_url]
    env = {"ANTHROPIC_BASE_URL": server.base_url} if anthropic else None
    process = runner([str(manifest), "--db", str(db), "--no-progress", *where, *flags], env=env)
    assert process.wait(timeout=120) == 0, process.stderr()
    return db


def refused_share(stats: dict[str, Any]) -> float:
    assert stats["limit_violations"] == stats["by_status"].get("429", 0)
    return float(stats["limit_violations"] / stats["requests"])


def rate(stats: dict[str, Any]) -> float:
    """Answers a second over the server's span (first request to last answer)."""
    return float(stats["answers_total"] / stats["answer_span_s"])


def busiest_second(db: Path) -> int:
    """The most attempts started in any 1-second window, from the attempts table."""
    stamps = sorted(
        datetime.fromisoformat(str(a["started_at"])).timestamp()
        for rows in snapshot(db).attempts.values()
        for a in rows
    )
    return max(sum(1 for s in stamps[i:] if s < start + 1.0) for i, start in enumerate(stamps))


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_without_rpm_a_run_learns_the_servers_limit_from_its_headers(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path, wire: str
) -> None:
    """600 RPM (10 a second) said only in the headers; 300 jobs at the default concurrency of 32: at most
    2% refused, and at least 90% of the limit over the run's whole span."""
    jobs = prompts(300, "learn")
    server = fake_server(latency_ms=5, rpm=600, retry_after_s=0.2)

    db = run_cli(runner, tmp_path, server, jobs, anthropic=wire == "anthropic")

    stats = server.stats()
    route = "/v1/messages" if wire == "anthropic" else "/v1/chat/completions"
    assert stats["by_route"] == {route: stats["requests"]}
    assert refused_share(stats) <= 0.02, stats
    assert rate(stats) >= 0.9 * 10, stats
    check_invariants(snapshot(db), stats, ids=jobs, reference=None)


def test_without_tpm_a_run_learns_the_servers_token_limit(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path
) -> None:
    """190,000 TPM (3,166 tokens a second), charged as prompt + max_tokens (about 306 a request): at most
    2% refused, and at least 90% of the token limit over the run's span.

    A window admits whole requests: 10 of our estimates (313-314 tokens: our prompt estimate counts about
    8 tokens of message overhead that the fake server does not charge) fit in 3,166, 11 do not. With a
    small ``max_tokens`` the share of the limit used is lower, learned or configured alike."""
    jobs = prompts(200, "tpm")
    server = fake_server(latency_ms=5, tpm=190_000, retry_after_s=0.2)

    db = run_cli(runner, tmp_path, server, jobs, max_tokens=300)

    stats = server.stats()
    assert refused_share(stats) <= 0.02, stats
    charged = stats["tokens"]["input"] + 300 * stats["answers_total"]  # what the server's window counted
    assert charged / stats["answer_span_s"] >= 0.9 * 190_000 / 60, stats
    check_invariants(snapshot(db), stats, ids=jobs, reference=None)


def test_a_configured_rpm_stays_a_ceiling_when_the_server_advertises_more(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path
) -> None:
    """``--rpm 600`` against a server that advertises (and allows) 6,000: never more than 10 requests in
    any second, from the attempts table, and the run's span no shorter than 10 a second allows (a first
    10 at once, then 10 a second; at the server's 6,000 it would take a tenth of that)."""
    jobs = prompts(60, "ceiling")
    server = fake_server(latency_ms=5, rpm=6000)

    db = run_cli(runner, tmp_path, server, jobs, "--rpm", "600")

    stats = server.stats()
    assert stats["limit_violations"] == 0
    assert busiest_second(db) <= 10
    assert stats["answer_span_s"] >= (len(jobs) - 10) / 10, stats
    check_invariants(snapshot(db), stats, ids=jobs, reference=None)


def test_a_lower_advertised_limit_lowers_a_configured_one(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path
) -> None:
    """``--rpm 6000`` against a server that allows 600: the run keeps to the server's 600 (at most 2%
    refused), instead of sending ten times too fast."""
    jobs = prompts(100, "lower")
    server = fake_server(latency_ms=5, rpm=600, retry_after_s=0.2)

    db = run_cli(runner, tmp_path, server, jobs, "--rpm", "6000")

    stats = server.stats()
    assert refused_share(stats) <= 0.02, stats
    check_invariants(snapshot(db), stats, ids=jobs, reference=None)
