"""The server's books: what it was asked, what it answered, and how often the same prompt came back.

Every counter is O(1) per request (``duplicates`` is kept incrementally), so the books stay cheap at thousands
of requests per second. The server runs in one event loop, so no locks are needed.

The batch APIs keep books of their own (:class:`BatchBooks`): their traffic changes none of the realtime
counters, so a test can tell what was sent in real time from what was put in a provider batch.
"""

from __future__ import annotations

import time
from typing import Any


class BatchBooks:
    """What the batch APIs were given and answered (docs/batch-wire.md "Books")."""

    __slots__ = (
        "answers",
        "batches",
        "by_status",
        "errors",
        "failed_batches",
        "files",
        "input_tokens",
        "line_duplicates",
        "lines",
        "output_tokens",
        "placements",
        "requests",
    )

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.files = 0
        self.batches: dict[str, int] = {}
        self.failed_batches = 0
        self.lines = 0
        self.placements: dict[str, int] = {}
        self.line_duplicates = 0
        self.answers = 0
        self.errors = 0
        self.input_tokens = 0
        self.output_tokens = 0

    def request(self) -> int:
        """Count one request to a batch route; return its 1-based number (the ``batch_api_faults`` key)."""
        self.requests += 1
        return self.requests

    def status(self, code: int) -> None:
        name = str(code)
        self.by_status[name] = self.by_status.get(name, 0) + 1

    def batch(self, api: str, *, failed: bool) -> None:
        """A batch was created on ``api`` (``openai`` or ``anthropic``); ``failed``: it fails validation."""
        self.batches[api] = self.batches.get(api, 0) + 1
        self.failed_batches += failed

    def place(self, key: str | None) -> int:
        """A line with prompt ``key`` was put in a batch that will run; return how many times it has been
        (its attempt number for the fault plan). ``None``: a body without a prompt key (answered 400)."""
        self.lines += 1
        if key is None:
            return 1
        count = self.placements.get(key, 0) + 1
        self.placements[key] = count
        if count > 1:
            self.line_duplicates += 1
        return count

    def settled(self, *, answers: int, errors: int, input_tokens: int, output_tokens: int) -> None:
        """A batch ended: ``answers`` lines answered, ``errors`` lines answered with an error."""
        self.answers += answers
        self.errors += errors
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def snapshot(self, *, prompts: bool) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "batch_requests": self.requests,
            "batch_by_status": dict(self.by_status),
            "batch_files": self.files,
            "batches": dict(self.batches),
            "batches_failed": self.failed_batches,
            "batch_lines": self.lines,
            "batch_line_duplicates": self.line_duplicates,
            "batch_answers": self.answers,
            "batch_errors": self.errors,
            "batch_tokens": {"input": self.input_tokens, "output": self.output_tokens},
        }
        if prompts:
            stats["batch_placements"] = dict(self.placements)
        return stats


class Books:
    """Counters behind ``GET /stats``; :meth:`clear` is ``POST /reset``."""

    __slots__ = (
        "answers",
        "answers_total",
        "attempts",
        "batch",
        "by_fault",
        "by_route",
        "by_status",
        "cached_tokens",
        "disconnects",
        "duplicates",
        "first_request_at",
        "in_flight",
        "input_tokens",
        "last_answer_at",
        "limit_violations",
        "output_tokens",
        "peak_concurrency",
        "requests",
        "streams",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.batch = BatchBooks()
        self.clear()

    def clear(self) -> None:
        """Forget everything but the requests still in flight (they are counted when they finish)."""
        self.requests = 0
        self.streams = 0
        self.peak_concurrency = self.in_flight
        self.by_route: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.by_fault: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.answers: dict[str, int] = {}
        self.answers_total = 0
        self.duplicates = 0
        self.limit_violations = 0
        self.disconnects = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0
        self.first_request_at: float | None = None
        self.last_answer_at: float | None = None
        self.batch.clear()

    def begin(self, route: str) -> None:
        """A request arrived on an API route."""
        self.requests += 1
        if self.first_request_at is None:
            self.first_request_at = time.monotonic()
        self.by_route[route] = self.by_route.get(route, 0) + 1
        self.in_flight += 1
        if self.in_flight > self.peak_concurrency:
            self.peak_concurrency = self.in_flight

    def end(self) -> None:
        """A request is done (answered, failed, aborted or abandoned by its client)."""
        self.in_flight -= 1

    def attempt(self, key: str) -> int:
        """Count one more attempt of prompt ``key``; return its 1-based attempt number."""
        number = self.attempts.get(key, 0) + 1
        self.attempts[key] = number
        return number

    def status(self, code: int) -> None:
        name = str(code)
        self.by_status[name] = self.by_status.get(name, 0) + 1

    def fault(self, kind: str) -> None:
        self.by_fault[kind] = self.by_fault.get(kind, 0) + 1

    def violation(self) -> None:
        """The limiter refused a request."""
        self.limit_violations += 1

    def disconnect(self) -> None:
        """The client went away before the server answered (its handler was cancelled)."""
        self.disconnects += 1

    def answer(self, key: str, *, input_tokens: int, output_tokens: int, cached_tokens: int) -> None:
        """Count a complete answer to ``key``, its tokens, and a duplicate unless it is the first."""
        count = self.answers.get(key, 0)
        self.answers[key] = count + 1
        if count:
            self.duplicates += 1
        self.answers_total += 1
        self.last_answer_at = time.monotonic()
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_tokens += cached_tokens

    def _answer_span(self) -> float | None:
        """Seconds from the first request to the last answer (a client's rate without its start-up)."""
        if self.first_request_at is None or self.last_answer_at is None:
            return None
        return round(self.last_answer_at - self.first_request_at, 6)

    def snapshot(self, *, prompts: bool = True) -> dict[str, Any]:
        """The ``GET /stats`` document; ``prompts=False`` leaves out the per-prompt maps (big runs)."""
        stats: dict[str, Any] = {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "peak_concurrency": self.peak_concurrency,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "by_fault": dict(self.by_fault),
            "limit_violations": self.limit_violations,
            "disconnects": self.disconnects,
            "prompts": len(self.attempts),
            "answers_total": self.answers_total,
            "streams": self.streams,
            "duplicates": self.duplicates,
            "answer_span_s": self._answer_span(),
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cached": self.cached_tokens,
            },
        }
        if prompts:
            stats["attempts"] = dict(self.attempts)
            stats["answers"] = dict(self.answers)
        return stats | self.batch.snapshot(prompts=prompts)
