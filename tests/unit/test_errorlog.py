"""The error log, fed outcomes by hand on a clock the test moves (no sleeping)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from batchrunner.engine.errorlog import ErrorLog, label, safe_url
from batchrunner.models import AttemptRecord, ClaimedJob, JobState, Lease, Outcome

URL = "http://127.0.0.1:9/v1"
REFUSED = "openai: connection failed (ConnectError: All connection attempts failed)"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(n: int) -> ClaimedJob:
    return ClaimedJob(
        lease=Lease(job_id=n, token="t"),
        custom_id=f"job-{n}",
        line_number=n,
        provider="openai",
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        request_json="{}",
        attempt=2,
    )


def outcome(error_class: str | None, status: int | None, error: str | None = None) -> Outcome:
    attempt = AttemptRecord(
        number=2,
        runner_id="r",
        started_at=datetime.now(UTC),
        status_code=status,
        error_class=error_class,
        error_message=error,
        latency_ms=12.4,
    )
    state = JobState.SUCCEEDED if error_class is None else JobState.PENDING
    return Outcome(lease=Lease(job_id=1, token="t"), attempt=attempt, state=state, error=error)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "batchrunner.engine.errorlog" and r.levelno == level
    ]


def test_first_appearance_then_counts_at_most_every_interval_and_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="batchrunner")
    clock = Clock()
    errors = ErrorLog(where=lambda _name: URL, interval_s=10.0, clock=clock)
    for _ in range(100):  # 100 refused connections within 4 s: one line, no count yet
        errors.attempt(job(1), outcome("transient", None, REFUSED))
        clock.now += 0.04
    assert messages(caplog, logging.INFO) == [f"openai: connection error from {URL}: {REFUSED[8:]}"]
    errors.attempt(job(1), outcome("transient", 503, "openai: HTTP 503: The server is overloaded"))
    clock.now += 6.5  # 10 s since the start
    errors.attempt(job(1), outcome("transient", None, REFUSED))
    infos = messages(caplog, logging.INFO)
    assert infos[1] == f"openai: HTTP 503 transient from {URL}: HTTP 503: The server is overloaded"
    assert infos[2:] == [
        f"openai: connection error x101 from {URL}: {REFUSED[8:]}"
    ]  # the 503 was counted once
    for _ in range(10):
        errors.attempt(job(1), outcome("transient", None, REFUSED))
    clock.now += 3.0
    errors.attempt(job(1), outcome(None, 200))  # an answer is no error
    assert len(messages(caplog, logging.INFO)) == 3  # not 10 s since the last count
    errors.close()
    assert messages(caplog, logging.INFO)[3:] == [f"openai: connection error x111 from {URL}: {REFUSED[8:]}"]
    errors.close()
    assert len(messages(caplog, logging.INFO)) == 4  # nothing new: nothing more


def test_debug_logs_one_line_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="batchrunner")
    errors = ErrorLog(where=lambda _name: URL, clock=Clock())
    errors.attempt(job(7), outcome("transient", None, REFUSED))
    errors.attempt(job(8), outcome(None, 200))
    errors.attempt(job(9), None)  # nothing sent: no line
    assert messages(caplog, logging.DEBUG) == [
        "job job-7 attempt 2: no status, 12 ms, transient -> pending",
        "job job-8 attempt 2: 200, 12 ms, ok -> succeeded",
    ]


def test_nothing_at_the_default_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="batchrunner")
    errors = ErrorLog(where=lambda _name: URL, clock=Clock())
    errors.attempt(job(1), outcome("transient", None, REFUSED))
    errors.close()
    assert not [r for r in caplog.records if r.name == "batchrunner.engine.errorlog"]


@pytest.mark.parametrize(
    ("error_class", "status", "expected"),
    [
        ("transient", None, "connection error"),
        ("timeout", None, "timeout"),
        ("transient", 500, "HTTP 500 transient"),
        ("rate_limited", 429, "HTTP 429 rate_limited"),
        ("invalid_response", 200, "HTTP 200 invalid_response"),
    ],
)
def test_label(error_class: str, status: int | None, expected: str) -> None:
    assert label(error_class, status) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1"),
        ("https://user:s3cret@proxy.example:8443/v1", "https://proxy.example:8443/v1"),  # no password
        ("https://token@proxy.example/v1", "https://proxy.example/v1"),
        ("in-process", "in-process"),
    ],
)
def test_safe_url(url: str, expected: str) -> None:
    assert safe_url(url) == expected


def test_a_key_in_a_message_is_scrubbed_from_json_and_text_lines() -> None:
    import json as json_module

    from batchrunner.cli.logs import JsonFormatter, _ScrubbingText, forget_secrets, keep_secret

    keep_secret("sk-live-canary-999")
    try:
        record = logging.LogRecord(
            "batchrunner.x", logging.WARNING, __file__, 1, "bad key %s", ("sk-live-canary-999",), None
        )
        record.provider = "openai"
        line = JsonFormatter().format(record)
        assert (
            json_module.loads(line)["message"] == "bad key ***"
            and json_module.loads(line)["provider"] == "openai"
        )
        assert "canary" not in _ScrubbingText("%(message)s").format(record)
    finally:
        forget_secrets()
