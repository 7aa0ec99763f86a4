"""The server's books: what it was asked, what it answered, and how often the same prompt came back.

Every counter is O(1) per request (``duplicates`` is kept incrementally), so the books stay cheap at thousands
of requests per second. The server runs in one event loop, so no locks are needed.
"""

from __future__ import annotations

import time
from typing import Any


class Books:
    """Counters behind ``GET /stats``; :meth:`clear` is ``POST /reset``."""

    __slots__ = (
        "answers",
        "answers_total",
        "attempts",
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
        return stats
