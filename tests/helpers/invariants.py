"""Checking a run's outcome against docs/reliability.md's invariants I1-I7.

- :func:`reference_answers` asks a fault-free fake server for every job's answer (the fake server's answers
  are deterministic per prompt);
- :func:`check_invariants` checks I1-I7 against a :class:`~helpers.database.Snapshot` and the server's
  books; :func:`assert_no_canary` checks that the canary key leaked nowhere.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrunner.fakeserver import parse_plan
from batchrunner.fakeserver.testing import FakeServerHandle
from helpers.database import Snapshot, connect

CANARY = "sk-canary-run-7c1e9d2b4a6f8e0d3c5b"
TERMINAL = {"succeeded", "failed", "cancelled"}
REFUNDED_CLASSES = {"run_stopping", "systematic"}
"""Error classes of attempts given back with their attempt refunded (they do not count against the job)."""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    text: str
    input_tokens: int
    output_tokens: int


def reference_answers(start_server: Callable[..., FakeServerHandle], db: Path) -> dict[str, Answer]:
    """Every job's request as queued, sent once to a fresh fault-free fake server: the expected answers.

    The server's answers are a pure function of the prompt; its fault directives are neutralised by a
    schedule that says ``ok`` for every prompt (a schedule wins over a directive).
    """
    conn = connect(db)
    try:
        rows = conn.execute("SELECT custom_id, endpoint, request_json FROM jobs ORDER BY id").fetchall()
    finally:
        conn.close()
    jobs = {row["custom_id"]: (row["endpoint"], json.loads(row["request_json"])) for row in rows}
    keys = [body["messages"][-1]["content"] for _, body in jobs.values()]
    server = start_server(schedule={key: parse_plan("ok") for key in keys})
    return {custom_id: _ask(server, endpoint, body) for custom_id, (endpoint, body) in jobs.items()}


def _ask(server: FakeServerHandle, endpoint: str, body: dict[str, Any]) -> Answer:
    request = urllib.request.Request(
        f"{server.base_url}{endpoint}",
        data=json.dumps(body).encode(),
        headers={"authorization": "Bearer reference", "content-type": "application/json"},
    )
    with _NO_PROXY.open(request, timeout=10) as response:
        data = json.loads(response.read())
    usage = data["usage"]
    if endpoint == "/v1/messages":  # Anthropic counts cache reads apart; batchrunner's input includes them
        return Answer(
            text=data["content"][0]["text"],
            input_tokens=usage["input_tokens"] + usage["cache_read_input_tokens"],
            output_tokens=usage["output_tokens"],
        )
    return Answer(
        text=data["choices"][0]["message"]["content"],
        input_tokens=usage["prompt_tokens"],
        output_tokens=usage["completion_tokens"],
    )


def prompt_of(job: Mapping[str, Any]) -> str:
    """The fake server's prompt key of a queued job (the last user message)."""
    content: str = json.loads(job["request_json"])["messages"][-1]["content"]
    return content


def check_invariants(
    snap: Snapshot,
    stats: Mapping[str, Any] | None,
    *,
    ids: Iterable[str],
    reference: Mapping[str, Answer] | None,
    in_flight_at_kills: int = 0,
    stopped: bool = False,
) -> None:
    """docs/reliability.md I1-I7 (the canary grep is :func:`assert_no_canary`).

    ``in_flight_at_kills``: calls that may have been sent without an attempt row being written (runners
    killed or paused past their lease); 0 means every server call must have its attempt row (I6 exact).
    ``stopped``: an auth/quota/budget stop, after which ``pending`` jobs are allowed.
    ``reference``: the expected answers of the jobs it names (normally all of them).
    ``stats``: the fake server's books; ``None`` for the in-process fake provider (I3/I6 not checked).
    """
    ids = list(ids)
    # I1 + I4: every line has exactly one job, in a terminal state (or pending after a stop)
    assert sorted(snap.jobs) == sorted(ids), "jobs in the database differ from the manifest lines"
    allowed = TERMINAL | ({"pending"} if stopped else set())
    bad = {cid: job["state"] for cid, job in snap.jobs.items() if job["state"] not in allowed}
    assert not bad, f"jobs not in a final state: {bad}"
    assert all(job["lease_token"] is None for job in snap.jobs.values()), "a lease left behind"
    # I5: no result recorded twice; results only for succeeded jobs
    assert snap.result_rows == sum(len(r) for r in snap.results.values())
    twice = [cid for cid, rows in snap.results.items() if len(rows) > 1]
    assert not twice, f"results recorded twice: {twice}"
    for cid, job in snap.jobs.items():
        assert len(snap.results[cid]) == (job["state"] == "succeeded"), f"{cid}: result vs state"
    # I2: outputs and token counts equal the fault-free reference
    if reference is not None:
        for cid in snap.in_state("succeeded") & set(reference):
            got, want = snap.results[cid][0], reference[cid]
            assert (got["output_text"], got["input_tokens"], got["output_tokens"]) == (
                want.text,
                want.input_tokens,
                want.output_tokens,
            ), f"{cid}: stored answer differs from the reference"
    # I7 (the database half)
    assert snap.integrity == "ok"
    # what status reads (the run counters) is what the rows say
    assert not snap.counter_mismatches, snap.counter_mismatches
    if stats is None:  # the in-process fake provider: no server books
        return
    # I3 + I6: server calls per job vs attempts recorded
    calls = stats["attempts"]
    extra = 0
    for cid, job in snap.jobs.items():
        sent = calls.get(prompt_of(job), 0)
        # an "interrupted" row is a request marked sent when its runner stopped: it may not have arrived
        rows = sum(1 for a in snap.attempts[cid] if a["error_class"] != "interrupted")
        refunded = sum(1 for a in snap.attempts[cid] if a["error_class"] in REFUNDED_CLASSES)
        assert sent <= job["attempts"] + refunded, f"{cid}: {sent} calls but {job['attempts']} attempts"
        assert rows <= sent, f"{cid}: {rows} attempt rows but the server saw {sent} calls"
        assert [a["number"] for a in snap.attempts[cid]] == sorted(a["number"] for a in snap.attempts[cid])
        extra += sent - rows
    assert extra <= in_flight_at_kills, f"{extra} server calls without an attempt row"
    # a request cut off by a kill before its body was read is counted, but not as a prompt's attempt
    assert 0 <= stats["requests"] - sum(calls.values()) <= in_flight_at_kills


def assert_no_canary(root: Path, *texts: str, canary: str = CANARY) -> set[str]:
    """The canary key (or its distinctive tail) appears in no file under ``root`` nor in ``texts``;
    returns the names of the files checked."""
    needles = [canary.encode(), canary[-12:].encode()]
    checked = set()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            checked.add(path.name)
            for needle in needles:
                assert needle not in data, f"the canary key leaked into {path}"
    for text in texts:
        for needle in needles:
            assert needle.decode() not in text, "the canary key leaked into captured output"
    return checked
