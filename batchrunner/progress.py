"""Progress on stderr: a live line on a terminal, a periodic one-line summary otherwise; never stdout.

The runner reports each attempt's result and each checkpointed group; this module only counts and prints.
"""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

from batchrunner.attempt import Stop
from batchrunner.models import JobState
from batchrunner.store.records import Outcome, RunStats


class Progress:
    """Counts what the runner does and prints it every ``interval_s`` (a TTY: a live, redrawn line)."""

    def __init__(
        self, *, total: int, done_before: int, stream: TextIO, live: bool, interval_s: float
    ) -> None:
        self.total = total
        self.done_before = done_before
        self.stream = stream
        self.live = live
        self.interval_s = interval_s
        self.started = time.monotonic()
        self.succeeded = self.failed = self.retries = self.errors = 0
        self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0

    def on_result(self, result: Outcome | Stop) -> None:
        outcome = result.outcome if isinstance(result, Stop) else result
        if outcome is None:
            return
        if outcome.attempt.error_class is not None:
            self.errors += 1
        if outcome.state is JobState.PENDING:
            self.retries += 1
        elif outcome.state is JobState.FAILED:
            self.failed += 1

    def on_written(self, batch: list[Outcome], accepted: set[int]) -> None:
        for outcome in batch:
            if outcome.result is None or outcome.lease.job_id not in accepted:
                continue
            self.succeeded += 1
            self.input_tokens += outcome.result.input_tokens
            self.output_tokens += outcome.result.output_tokens
            self.cost_usd += outcome.result.cost_usd or 0.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._print(self.line(), final=False)

    def finish(self, stats: RunStats) -> None:
        self._print(self.line(), final=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        done = self.done_before + self.succeeded + self.failed
        rate = (self.succeeded + self.failed) / elapsed
        left = max(self.total - done, 0)
        eta = f"{left / rate:,.0f}s" if rate > 0 and left else "-"
        percent = 100.0 * done / self.total if self.total else 100.0
        return (
            f"{done:,}/{self.total:,} ({percent:.1f}%)  {rate:,.1f} jobs/s  eta {eta}  "
            f"tokens {self.input_tokens:,}/{self.output_tokens:,}  ${self.cost_usd:,.4f}  "
            f"errors {self.errors:,}  failed {self.failed:,}"
        )

    def _print(self, line: str, *, final: bool) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
