"""Helpers for the run engine's end-to-end tests (``tests/test_run_*.py``).

- manifests: :func:`write_manifest` writes simple lines, one prompt per id (the prompt is the fake server's
  prompt key, so every job has its own books and its own fault directive);
- running: :func:`settings_for` (in-process ``api.run``) and :class:`RunnerProcess` (``batchrunner run`` as
  a subprocess, for signals and kills), output captured to files under ``tmp_path``;
- reading the outcome: :func:`snapshot` reads the database with the standard library's ``sqlite3`` (what
  is durably there, not what the engine believes);
- checking it: :func:`reference_answers` asks a fault-free fake server for every job's answer (the fake
  server's answers are deterministic per prompt), and :func:`check_invariants` checks docs/reliability.md's
  I1-I7 against the snapshot and the server's books.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from batchrunner.config import Settings, load_settings
from batchrunner.fakeserver import parse_plan
from batchrunner.fakeserver.testing import FakeServerHandle

MODEL = "gpt-4o-mini"
CANARY = "sk-canary-run-7c1e9d2b4a6f8e0d3c5b"
TERMINAL = {"succeeded", "failed", "cancelled"}
REFUNDED_CLASSES = {"run_stopping", "systematic"}
"""Error classes of attempts given back with their attempt refunded (they do not count against the job)."""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- manifests ------------------------------------------------------------------------------------------


def prompts(n: int, tag: str, faults: Mapping[int, str] | None = None) -> dict[str, str]:
    """``n`` jobs ``{tag}-000``... with distinct prompts; ``faults`` adds a ``[[fault:PLAN]]`` by index."""
    faults = faults or {}
    jobs = {}
    for i in range(n):
        directive = f" [[fault:{faults[i]}]]" if i in faults else ""
        jobs[f"{tag}-{i:03d}"] = f"{tag} prompt number {i}{directive}"
    return jobs


def write_manifest(
    path: Path, jobs: Mapping[str, str], *, model: str = MODEL, max_tokens: int | None = None
) -> Path:
    """Simple manifest lines ``{"id", "prompt", "model"}`` (and ``max_tokens``), in the order given."""
    with path.open("w", encoding="utf-8") as out:
        for custom_id, prompt in jobs.items():
            line: dict[str, Any] = {"id": custom_id, "prompt": prompt, "model": model}
            if max_tokens is not None:
                line["max_tokens"] = max_tokens
            out.write(json.dumps(line) + "\n")
    return path


# -- running --------------------------------------------------------------------------------------------


def settings_for(base_url: str | None, db: Path, **flags: Any) -> Settings:
    """Settings as ``batchrunner run --base-url URL --db DB --FLAG ...`` resolves them (the real path)."""
    given = {"db": str(db), "base_url": base_url, **flags}
    return load_settings(flags=given, env=os.environ, cwd=Path.cwd())


class RunnerProcess:
    """``python -m batchrunner run ARGS`` in a subprocess; stdout and stderr go to files in ``workdir``."""

    def __init__(
        self, workdir: Path, args: Iterable[str], *, env: Mapping[str, str] | None = None, name: str = "run"
    ) -> None:
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self._out: IO[bytes] = self.stdout_path.open("wb")
        self._err: IO[bytes] = self.stderr_path.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchrunner", "run", *args],
            stdout=self._out,
            stderr=self._err,
            env=full_env,
            cwd=workdir,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the exit (killing it after ``timeout``) and return the exit code (``-9``: SIGKILL)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the runner did not exit within {timeout} s:\n{self.stderr()}") from None
        finally:
            self._out.close()
            self._err.close()
        return code

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> int:
        """SIGKILL and reap (so that its pid is gone, as after a real crash)."""
        self.process.send_signal(signal.SIGKILL)
        return self.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Test cleanup: make sure the process is gone (SIGCONT first, in case it was stopped)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.wait()


def run_args(manifest: Path | None, server: FakeServerHandle, *extra: str) -> list[str]:
    """``[FILE] --base-url URL --no-progress ...``; without ``manifest``: resume the latest run."""
    head = [str(manifest)] if manifest is not None else []
    return [*head, "--base-url", server.openai_base_url, "--no-progress", *extra]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- reading the outcome --------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What the database holds, by custom_id."""

    jobs: dict[str, dict[str, Any]]
    attempts: dict[str, list[dict[str, Any]]]
    results: dict[str, list[dict[str, Any]]]
    result_rows: int
    integrity: str
    runners: list[dict[str, Any]] = field(default_factory=list)

    def states(self) -> Counter[str]:
        return Counter(job["state"] for job in self.jobs.values())

    def in_state(self, state: str) -> set[str]:
        return {cid for cid, job in self.jobs.items() if job["state"] == state}


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def snapshot(db: Path) -> Snapshot:
    conn = connect(db)
    try:
        jobs = {row["custom_id"]: dict(row) for row in conn.execute("SELECT * FROM jobs ORDER BY id")}
        by_id = {job["id"]: cid for cid, job in jobs.items()}
        attempts: dict[str, list[dict[str, Any]]] = {cid: [] for cid in jobs}
        for row in conn.execute("SELECT * FROM attempts ORDER BY id"):
            attempts[by_id[row["job_id"]]].append(dict(row))
        results: dict[str, list[dict[str, Any]]] = {cid: [] for cid in jobs}
        rows = conn.execute("SELECT * FROM results ORDER BY id").fetchall()
        for row in rows:
            results[by_id[row["job_id"]]].append(dict(row))
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        runners = [dict(row) for row in conn.execute("SELECT * FROM runners ORDER BY started_at")]
    finally:
        conn.close()
    return Snapshot(
        jobs=jobs,
        attempts=attempts,
        results=results,
        result_rows=len(rows),
        integrity=integrity,
        runners=runners,
    )


# -- checking it ----------------------------------------------------------------------------------------


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
