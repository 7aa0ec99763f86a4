"""The batch APIs' memory: uploaded files and batches, and where a batch stands at a given time.

A batch's life is a function of the clock, computed on each look (no background task): it is validating
for a moment (OpenAI), then its lines complete evenly over ``batch_seconds``, then it finalizes and ends.
``batch_expire_fraction`` makes it expire once that fraction is done; a cancel freezes the lines done so
far, and the batch ends a moment later. When a look finds it ended, the batch is *settled* once: its result
lines are written (OpenAI output and error files, Anthropic results) and the books count its answers.
See docs/batch-wire.md for the states each API reports.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from batchrunner.fakeserver import batchlines
from batchrunner.fakeserver.batchlines import LineAnswer
from batchrunner.fakeserver.books import BatchBooks

VALIDATE_SHARE = 0.05
"""The share of ``batch_seconds`` an OpenAI batch spends validating (and finalizing, and cancelling)."""


class Phase(StrEnum):
    """Where a batch stands (OpenAI's words; Anthropic reports in_progress, canceling or ended)."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (Phase.FAILED, Phase.COMPLETED, Phase.EXPIRED, Phase.CANCELLED)


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    """When each line of a batch of ``size`` lines is done, and the phase at any time (pure)."""

    created: float
    size: int
    seconds: float
    validate_s: float
    finalize_s: float
    expire_fraction: float | None = None
    invalid: bool = False

    @property
    def start(self) -> float:
        return self.created + self.validate_s

    @property
    def limit(self) -> int:
        """How many lines will be done before the batch expires (``size`` if it does not)."""
        if self.expire_fraction is None:
            return self.size
        return min(self.size, math.floor(self.expire_fraction * self.size))

    @property
    def expires_at(self) -> float | None:
        return None if self.limit >= self.size else self.start + self.seconds * self.limit / self.size

    @property
    def lines_done_at(self) -> float:
        return self.start + self.seconds

    def done(self, now: float, cancel_at: float | None = None) -> int:
        """Lines done at ``now`` (those done by ``cancel_at``, after a cancel)."""
        moment = now if cancel_at is None else min(now, cancel_at)
        if self.invalid or moment < self.start:
            return 0
        if self.seconds <= 0:
            return self.limit
        return min(self.limit, math.floor((moment - self.start) * self.size / self.seconds + 1e-9))

    def cancel_grace(self) -> float:
        return self.validate_s or VALIDATE_SHARE * self.seconds

    def phase(self, now: float, cancel_at: float | None = None) -> Phase:
        if self.invalid:
            return Phase.VALIDATING if now < self.start else Phase.FAILED
        if cancel_at is not None:
            return Phase.CANCELLING if now < cancel_at + self.cancel_grace() else Phase.CANCELLED
        if now < self.start:
            return Phase.VALIDATING
        expires_at = self.expires_at
        if expires_at is not None:
            return Phase.IN_PROGRESS if now < expires_at else Phase.EXPIRED
        if now < self.lines_done_at:
            return Phase.IN_PROGRESS
        return Phase.FINALIZING if now < self.lines_done_at + self.finalize_s else Phase.COMPLETED

    def ended_at(self, cancel_at: float | None = None) -> float:
        if self.invalid:
            return self.start
        if cancel_at is not None:
            return cancel_at + self.cancel_grace()
        expires_at = self.expires_at
        return expires_at if expires_at is not None else self.lines_done_at + self.finalize_s


@dataclass(kw_only=True, slots=True)
class StoredFile:
    """An OpenAI file: an uploaded batch input, or a batch's output or error file."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    number: int
    """Creation order (lists are newest first; ``created_at`` is in whole seconds)."""

    def describe(self) -> dict[str, Any]:
        """The ``FileObject``."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass(kw_only=True, slots=True)
class Batch:
    """One batch, of either API; what it reports is computed from :attr:`timeline` and the clock."""

    id: str
    api: str
    """``openai`` or ``anthropic``."""
    number: int
    timeline: Timeline
    lines: list[LineAnswer]
    endpoint: str = "/v1/messages"
    model: str | None = None
    input_file_id: str | None = None
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    """OpenAI validation errors (the batch fails)."""
    cancel_at: float | None = None
    settled: bool = False
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: bytes | None = None
    """Anthropic: the results JSONL, once settled."""
    _failed_before: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._failed_before = [0, *itertools.accumulate(0 if line.ok else 1 for line in self.lines)]

    def phase(self, now: float) -> Phase:
        return self.timeline.phase(now, self.cancel_at)

    def done(self, now: float) -> int:
        return self.timeline.done(now, self.cancel_at)

    def counts(self, now: float) -> tuple[int, int]:
        """(answered, failed) among the lines done at ``now``."""
        done = self.done(now)
        failed = self._failed_before[done]
        return done - failed, failed

    def ended_at(self) -> float:
        return self.timeline.ended_at(self.cancel_at)

    def unfinished_kind(self, now: float) -> str:
        """What the lines not done became: ``expired`` or ``canceled``."""
        return "canceled" if self.phase(now) is Phase.CANCELLED else "expired"


class BatchStore:
    """Files and batches of one server, keyed by id, with the ids it hands out."""

    def __init__(self, books: BatchBooks, next_id: Callable[[], str]) -> None:
        self.books = books
        self.next_id = next_id
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self._numbers = itertools.count(1)

    def add_file(self, filename: str, purpose: str, data: bytes, now: float) -> StoredFile:
        stored = StoredFile(
            id=f"file-{self.next_id()}",
            filename=filename,
            purpose=purpose,
            data=data,
            created_at=int(now),
            number=next(self._numbers),
        )
        self.files[stored.id] = stored
        return stored

    def add_batch(self, batch: Batch) -> Batch:
        self.batches[batch.id] = batch
        return batch

    def number(self) -> int:
        return next(self._numbers)

    def batches_of(self, api: str) -> list[Batch]:
        """The batches of ``api``, newest first."""
        return sorted((b for b in self.batches.values() if b.api == api), key=lambda b: -b.number)

    def settle(self, batch: Batch, now: float) -> None:
        """Write the result lines of an ended batch and count them in the books, once."""
        if batch.settled or not batch.phase(now).ended:
            return
        batch.settled = True
        if batch.timeline.invalid:
            return
        done = batch.done(now)
        answered = batch.lines[:done]
        ok = [line for line in answered if line.ok]
        self.books.settled(
            answers=len(ok),
            errors=done - len(ok),
            input_tokens=sum(line.input_tokens for line in ok),
            output_tokens=sum(line.output_tokens for line in ok),
        )
        rest, kind = batch.lines[done:], batch.unfinished_kind(now)
        if batch.api == "anthropic":
            batch.results = b"".join(
                [
                    batchlines.anthropic_result(line, "succeeded" if line.ok else "errored")
                    for line in answered
                ]
                + [batchlines.anthropic_result(line, kind) for line in rest]
            )
            return
        code = "batch_cancelled" if kind == "canceled" else "batch_expired"
        output = b"".join(batchlines.openai_result(line) for line in ok)
        errors = b"".join(
            [batchlines.openai_result(line) for line in answered if not line.ok]
            + [batchlines.openai_not_run(line, code) for line in rest]
        )
        if output:
            batch.output_file_id = self.add_file(f"{batch.id}_output.jsonl", "batch_output", output, now).id
        if errors:
            batch.error_file_id = self.add_file(f"{batch.id}_error.jsonl", "batch_output", errors, now).id

    def settle_all(self, now: float) -> None:
        for batch in self.batches.values():
            self.settle(batch, now)
