"""``export --format openai-batch`` end to end: a real run against the fake server, then the real CLI.

The lines must read as OpenAI's own Batch API output: ``response`` (status code, request id, body) for
every job that got an HTTP answer, the provider's error body for an HTTP error, ``error`` only for jobs
that got none, and ``batch_req_`` ids that are the same in every export. Runs on a SQLite file and on
PostgreSQL (the last attempt of each job is read by the store's export query).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers.fake_server_fixtures import StartFakeServer
from helpers.invariants import CANARY
from helpers.manifests import prompts, write_manifest
from sqlalchemy import select

from batchrunner.cli import main
from batchrunner.providers.errors import MAX_ERROR_BODY_CHARS, error_from_response
from batchrunner.store import tables
from batchrunner.store.store import Store

BATCH_REQ_ID = re.compile(r"batch_req_[0-9a-f]{32}")
INJECTED = " (injected by the batchrunner fake server)"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def export_lines(db: str, output: str) -> list[dict[str, Any]]:
    result = cli("export", "--db", db, "--format", "openai-batch", "-o", output)
    assert result.exit_code == 0, result.output
    text = result.stdout if output == "-" else Path(output).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


async def last_attempts(db: str) -> dict[str, tuple[Any, ...]]:
    """custom_id -> (status_code, request_id, error_body) of its last attempt, read back from the store."""
    jobs, attempts = tables.jobs, tables.attempts
    store = await Store.open(db)
    try:
        async with store.db.read() as conn:
            rows = await conn.execute(
                select(jobs.c.custom_id, attempts.c.status_code, attempts.c.request_id, attempts.c.error_body)
                .join(attempts, attempts.c.job_id == jobs.c.id)
                .order_by(attempts.c.id)
            )
            return {custom_id: tuple(rest) for custom_id, *rest in rows}
    finally:
        await store.close()


def test_openai_batch_lines_match_openai_output(
    fake_server: StartFakeServer, tmp_path: Path, db_target: str
) -> None:
    plans = {0: "ok", 1: "500,*400", 2: "*500", 3: "*reset", 4: "*hang"}  # 1: the last attempt counts
    jobs = prompts(len(plans), "batch", plans)
    ok, bad_request, server_error, reset, hang = jobs
    server = fake_server(latency_ms=3, retry_after_s=0.1)
    manifest = write_manifest(tmp_path / "batch.jsonl", jobs)
    ran = cli(
        "run", str(manifest), "--db", db_target, "--base-url", server.openai_base_url,
        "--max-attempts", "2", "--timeout", "0.5", "--concurrency", "5", "--no-progress",
    )  # fmt: skip
    assert ran.exit_code == 1, ran.output  # some jobs failed, as planned
    # two jobs that were never sent: one cancelled, one still pending
    never = tmp_path / "late.jsonl"
    write_manifest(never, {"late-cancelled": "never sent"})
    assert cli("submit", str(never), "--db", db_target, "--run", "batch").exit_code == 0
    assert cli("cancel", "--db", db_target, "--run", "batch").exit_code == 0
    write_manifest(never, {"late-pending": "not sent yet"})
    assert cli("submit", str(never), "--db", db_target, "--run", "batch").exit_code == 0

    lines = export_lines(db_target, str(tmp_path / "out.jsonl"))
    by_id = {line["custom_id"]: line for line in lines}
    assert list(by_id) == [*jobs, "late-cancelled", "late-pending"]  # manifest order
    assert all(list(line) == ["id", "custom_id", "response", "error"] for line in lines)
    recorded = asyncio.run(last_attempts(db_target))

    answered = by_id[ok]
    assert answered["error"] is None
    assert answered["response"]["status_code"] == 200
    assert answered["response"]["request_id"] == recorded[ok][1] and recorded[ok][1].startswith("req_")
    assert answered["response"]["body"]["object"] == "chat.completion"
    assert answered["response"]["body"]["choices"][0]["message"]["content"]

    rejected = by_id[bad_request]
    assert rejected["error"] is None  # an HTTP answer, so a response, as OpenAI writes it
    assert rejected["response"] == {
        "status_code": 400,
        "request_id": recorded[bad_request][1],
        "body": {
            "error": {
                "message": "Invalid request." + INJECTED,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },  # the provider's error object, as the server sent it
    }
    assert rejected["response"]["request_id"].startswith("req_")
    exhausted = by_id[server_error]["response"]
    assert exhausted["status_code"] == 500 and exhausted["body"]["error"]["type"] == "server_error"
    assert by_id[server_error]["error"] is None

    for cid, code in [(reset, "transient"), (hang, "timeout")]:  # no HTTP answer came: error, no response
        assert by_id[cid]["response"] is None, cid
        assert by_id[cid]["error"]["code"] == code and by_id[cid]["error"]["message"].startswith("openai: ")
        assert recorded[cid][0] is None and recorded[cid][2] is None
    assert by_id["late-cancelled"]["response"] is None
    assert by_id["late-cancelled"]["error"] == {
        "code": "cancelled",
        "message": "no answer: the job is cancelled",
    }
    assert by_id["late-pending"]["error"] == {"code": "pending", "message": "no answer: the job is pending"}

    ids = [line["id"] for line in lines]
    assert all(BATCH_REQ_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
    again = export_lines(db_target, "-")
    assert [line["id"] for line in again] == ids  # stable across exports
    assert again == lines


def test_anthropic_error_body_is_exported_in_openai_shape(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anthropic's error body is exported as Anthropic sent it (it has an ``error`` object too)."""
    jobs = prompts(1, "ant", {0: "*400"})
    server = fake_server(latency_ms=3)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    db = str(tmp_path / "ant.db")
    manifest = write_manifest(tmp_path / "ant.jsonl", jobs, model="claude-3-5-haiku-latest", max_tokens=64)
    ran = cli(  # one job, so its 400 alone would count as systematic
        "run",
        str(manifest),
        "--db",
        db,
        "--provider",
        "anthropic",
        "--no-progress",
        "--no-stop-on-systematic",
    )
    assert ran.exit_code == 1, ran.output
    [line] = export_lines(db, "-")
    assert line["error"] is None and line["response"]["status_code"] == 400
    assert line["response"]["request_id"].startswith("req_")
    assert line["response"]["body"] == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "Invalid request." + INJECTED},
        "request_id": line["response"]["request_id"],
    }


def _error_body(body: object, secrets: tuple[str, ...] = ()) -> Any:
    error = error_from_response(
        "openai", status=401, headers={}, body=body, request_id="req_1", rate_limits=None,
        secrets=secrets, now=0,
    )  # fmt: skip
    return None if error.error_body is None else json.loads(error.error_body)


def test_error_bodies_are_kept_in_openai_shape_and_redacted() -> None:
    inner = {"message": f"Incorrect API key provided: {CANARY}", "type": "invalid_request_error", "code": "x"}
    kept = _error_body(inner, (CANARY,))  # the SDK's unwrapped error object
    assert kept == {"error": {**inner, "message": "Incorrect API key provided: ***"}}
    full = {"type": "error", "error": {"type": "authentication_error", "message": "bad sk-ant-abcdefgh12"}}
    assert _error_body(full) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "bad ***"},
    }
    assert _error_body("<html>bad gateway</html>") == {
        "error": {"message": "<html>bad gateway</html>", "type": None, "param": None, "code": None}
    }
    assert _error_body(None) is None and _error_body("") is None
    huge = _error_body({"message": "too big", "details": "x" * MAX_ERROR_BODY_CHARS})
    assert huge == {"error": {"message": "too big", "type": None, "param": None, "code": None}}
