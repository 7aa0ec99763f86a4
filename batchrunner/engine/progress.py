"""Progress on stderr: a live line on a terminal, a periodic one-line summary otherwise; never stdout.

The runner reports each checkpointed group of outcomes; this module only counts and prints.
The rate (and so the ETA) is measured over the last ``RATE_WINDOW_S``, not since the process started, so
that start-up and the first round trip do not make it wrong for the rest of the run. On a terminal the
line is cut to the terminal's width (a line that wraps scrolls on every redraw), and a log message
printed meanwhile clears it first, so that the message starts on a line of its own.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from batchrunner.models import JobState, Outcome, RunStats
from batchrunner.policy.pricing import format_usd

RATE_WINDOW_S = 30.0
CLEAR_LINE = "\r\x1b[2K"


class Progress:
    """Counts what the runner does and prints it every ``interval_s`` (a TTY: a live, redrawn line)."""

    def __init__(
        self,
        *,
        total: int,
        done_before: int,
        stream: TextIO,
        before: RunStats | None = None,
        live: bool,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        width: Callable[[], int] = lambda: shutil.get_terminal_size((80, 24)).columns,
    ) -> None:
        self.total = total
        self.done_before = done_before
        self.stream = stream
        self.live = live
        self.interval_s = interval_s
        self._clock = clock
        self._width = width
        self.succeeded = self.failed = self.retries = self.errors = self.unpriced = 0
        self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0
        self._before = before
        """The run's figures when this invocation started (a resumed run): the line adds them to its own
        failures, tokens and cost, so the figures do not jump to the run's when the last line comes."""
        self.in_flight: Callable[[], int] = lambda: 0
        """Requests sent and not answered yet (the runner sets it)."""
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])
        self._log_filter = _ClearLineFilter(self)
        self._drawn = False

    def on_written(self, batch: list[Outcome], accepted: set[int]) -> None:
        """The one feed: a group of outcomes the checkpointer wrote (``accepted``: those whose lease held),
        so that every figure counts what the database holds."""
        for outcome in batch:
            if outcome.lease.job_id not in accepted:
                continue
            if outcome.attempt.error_class is not None:
                self.errors += 1
            if outcome.state is JobState.PENDING:
                self.retries += 1
            elif outcome.state is JobState.FAILED:
                self.failed += 1
            if outcome.result is None:
                continue
            self.succeeded += 1
            self.input_tokens += outcome.result.input_tokens
            self.output_tokens += outcome.result.output_tokens
            if outcome.result.cost_usd is None:
                self.unpriced += 1
            else:
                self.cost_usd += outcome.result.cost_usd

    async def run(self) -> None:
        if self.live:
            _attach(self._log_filter, self.stream)
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                self._print(self.line(), final=False)
        finally:
            _detach(self._log_filter)

    def finish(self, stats: RunStats) -> None:
        """The last line, with the counts the database holds (the same figures as ``status``)."""
        rate = self.rate()  # this invocation's, before the counts become the run's
        states = stats.by_state
        self.total, self.done_before = stats.total, states["cancelled"]
        self.succeeded, self.failed = states["succeeded"], states["failed"]
        self.input_tokens, self.output_tokens = stats.input_tokens, stats.output_tokens
        self.cost_usd, self.unpriced = stats.cost_usd, stats.unpriced_results
        self._before = None
        self.in_flight = lambda: 0
        self._print(self.line(rate), final=True)

    def rate(self) -> float:
        """Jobs finished a second over the last ``RATE_WINDOW_S`` (since the start, before that)."""
        now, done = self._clock(), self.succeeded + self.failed
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        then, done_then = self._samples[0]
        return (done - done_then) / (now - then) if now > then else 0.0

    def line(self, rate: float | None = None) -> str:
        done = self.done_before + self.succeeded + self.failed
        rate = self.rate() if rate is None else rate
        left = max(self.total - done, 0)
        eta = f"{left / rate:,.0f}s" if rate > 0 and left else "-"
        percent = 100.0 * done / self.total if self.total else 100.0
        b = self._before
        failed = self.failed + (b.by_state["failed"] if b else 0)
        tokens_in = self.input_tokens + (b.input_tokens if b else 0)
        tokens_out = self.output_tokens + (b.output_tokens if b else 0)
        unpriced = self.unpriced + (b.unpriced_results if b else 0)
        cost = format_usd(self.cost_usd + (b.cost_usd if b else 0.0)) + (" + unknown" if unpriced else "")
        parts = [  # most important first: what does not fit the terminal is left out from the end
            f"{done:,}/{self.total:,} ({percent:.1f}%)",
            f"in flight {self.in_flight():,}",
            f"{rate:,.1f} jobs/s",
            f"eta {eta}",
            f"failed {failed:,}",
            cost,
            f"errors {self.errors:,}",
            f"tokens {tokens_in:,}/{tokens_out:,}",
        ]
        if not self.live:
            return "  ".join(parts)
        width = max(self._width() - 1, 20)
        while len(parts) > 1 and len("  ".join(parts)) > width:
            parts.pop()
        return "  ".join(parts)[:width]

    def _print(self, line: str, *, final: bool) -> None:
        if self.live:
            self.stream.write(CLEAR_LINE + line + ("\n" if final else ""))
            self._drawn = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Clear the live line (a log message is about to be printed); it is drawn again next tick."""
        if self._drawn:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self._drawn = False


class _ClearLineFilter(logging.Filter):
    """Clears the live line before a handler on the same stream prints a record (and lets it through)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.clear()
        return True


def _handlers_on(stream: TextIO) -> list[logging.Handler]:
    return [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is stream
    ]


def _attach(log_filter: _ClearLineFilter, stream: TextIO) -> None:
    for handler in _handlers_on(stream):
        handler.addFilter(log_filter)


def _detach(log_filter: _ClearLineFilter) -> None:
    for handler in logging.getLogger().handlers:
        handler.removeFilter(log_filter)
