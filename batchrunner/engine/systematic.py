"""Systematic permanent failure: when a provider+model's first answers all fail alike, stop the run.

A model name that does not exist (404 ``model_not_found``), a proxy that answers 400 "No connected db."
to everything: every job of that provider+model fails the same way, and failing them one by one burns
the whole batch in seconds and leaves every job ``failed``. The runner feeds the answers of each
provider+model (its *key*) to a :class:`SystematicFailures`, which holds the permanent failures until
it can tell:

- while a key is *undecided*, each permanent failure is **held** (not written: the job stays running);
- the ``threshold``-th held failure of one *class* (its HTTP status and the provider's error type, as
  :func:`failure_class` names it) makes the key **systematic**: the held jobs, and every later failure
  of that class (answers still in flight), go back to pending with their attempt refunded, and the run
  stops (exit 3) with :attr:`Systematic.reason`;
- a success, or a permanent failure of another class, makes the key **healthy**: the held failures are
  written as failed, and from then on every answer of that key is handled as usual;
- retryable errors (429, 5xx, timeouts, connection errors) are neither: they are retried and say
  nothing about the request itself, so they are not fed;
- :meth:`SystematicFailures.settle` decides the keys still undecided when the runner has nothing left
  to send (a provider+model with fewer than ``threshold`` jobs left): systematic if no job of theirs
  ever succeeded in the run (all of its jobs failed alike), else healthy (a resumed run's last few poison
  jobs fail as usual); or when the run stops for another reason: then the held jobs are only given back.

Refunded attempts are recorded with the error class :data:`REFUNDED_CLASS`. The tracker is pure (no
clock, no I/O); :class:`OutcomeFilter` is how the runner uses it: outcomes in, outcomes to write out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from batchrunner.models import ClaimedJob, JobState, Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")

Key = tuple[str, str | None]
"""A provider and a model (``None``: the job names none)."""

THRESHOLD = 20
"""How many first answers of one key must all fail alike before the run stops."""

REFUNDED_CLASS = "systematic"
"""The error class recorded for an attempt given back because its failure was systematic."""


def failure_class(status_code: int | None, error_type: str | None) -> str | None:
    """``"HTTP 404 model_not_found"``: the class failures must share; ``None`` for a failure without an
    HTTP answer (a request refused before it was sent is not the provider's answer)."""
    if status_code is None:
        return None
    return f"HTTP {status_code} {error_type}" if error_type else f"HTTP {status_code}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Systematic:
    """A key whose first answers all failed alike."""

    key: Key
    failure: str
    """The class they share (:func:`failure_class`)."""
    count: int
    """How many answers it took to decide (``threshold``, or fewer when those were all of its jobs)."""
    message: str
    """The provider's error text of the first of them (already redacted by the provider adapter)."""

    @property
    def reason(self) -> str:
        """The one line the user reads (``stopped: ...``)."""
        provider, model = self.key
        answers = f"the first {self.count} answers all" if self.count > 1 else "the only answer"
        text = self.message.removeprefix(f"{provider}: ").removeprefix(f"{self.failure}: ")
        return (
            f"{provider}: model {model!r}: {answers} failed with {self.failure}: {text} "
            "(the jobs are left pending: fix the model or request and run again; "
            "--no-stop-on-systematic fails them one by one instead)"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict(Generic[T]):
    """What to do with the items just decided (the one fed, and any held before it)."""

    write: list[T] = field(default_factory=list)
    """Write as they are (successes, failures of a healthy key)."""
    requeue: list[T] = field(default_factory=list)
    """Give back to pending with the attempt refunded."""
    stops: list[Systematic] = field(default_factory=list)
    """Keys found systematic by this call: stop the run."""


class _State(Enum):
    UNDECIDED = "undecided"
    HEALTHY = "healthy"
    SYSTEMATIC = "systematic"


@dataclass(slots=True)
class _Key(Generic[T]):
    state: _State = _State.UNDECIDED
    failure: str | None = None
    """The class held so far (undecided) or found systematic."""
    message: str = ""
    held: list[T] = field(default_factory=list)


class SystematicFailures(Generic[T]):
    """Tells, per provider+model, whether its first answers all fail alike; see the module docstring."""

    def __init__(self, threshold: int = THRESHOLD) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self._threshold = threshold
        self._keys: dict[Key, _Key[T]] = {}

    @property
    def held(self) -> int:
        """Items held, over every key."""
        return sum(len(entry.held) for entry in self._keys.values())

    def succeeded(self, key: Key, item: T) -> Verdict[T]:
        """An answer of ``key`` that succeeded: the key is healthy."""
        entry = self._entry(key)
        if entry.state is _State.UNDECIDED:
            return self._healthy(entry, item)
        return Verdict(write=[item])

    def failed(self, key: Key, failure: str, message: str, item: T) -> Verdict[T]:
        """A permanent failure of ``key`` of class ``failure``, with the provider's ``message``."""
        entry = self._entry(key)
        if entry.state is _State.HEALTHY:
            return Verdict(write=[item])
        if entry.state is _State.SYSTEMATIC:
            if failure == entry.failure:  # an answer that was in flight when the run stopped
                return Verdict(requeue=[item])
            return Verdict(write=[item])
        if entry.failure is not None and failure != entry.failure:
            return self._healthy(entry, item)
        if entry.failure is None:
            entry.failure, entry.message = failure, message
        entry.held.append(item)
        if len(entry.held) < self._threshold:
            return Verdict()
        return self._systematic(key, entry)

    def undecided(self) -> list[Key]:
        """The keys holding items."""
        return [key for key, entry in self._keys.items() if entry.state is _State.UNDECIDED and entry.held]

    def settle(self, *, stop: bool, healthy: Collection[Key] = ()) -> Verdict[T]:
        """Decide every undecided key that holds items: with ``stop``, as systematic (the runner has
        nothing else to send: those were all of their jobs) unless it is in ``healthy`` (some of its jobs
        succeeded before); without ``stop``, only give the items back (the run is stopping for another
        reason, and the keys stay undecided for what is left)."""
        verdict: Verdict[T] = Verdict()
        for key, entry in self._keys.items():
            if entry.state is not _State.UNDECIDED or not entry.held:
                continue
            if stop and key in healthy:
                verdict.write.extend(self._healthy(entry, None).write)
            elif stop:
                decided = self._systematic(key, entry)
                verdict.requeue.extend(decided.requeue)
                verdict.stops.extend(decided.stops)
            else:
                verdict.requeue.extend(entry.held)
                entry.held = []
        return verdict

    def _entry(self, key: Key) -> _Key[T]:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key()
        return entry

    def _healthy(self, entry: _Key[T], item: T | None) -> Verdict[T]:
        entry.state = _State.HEALTHY
        held, entry.held = entry.held, []
        return Verdict(write=held if item is None else [*held, item])

    def _systematic(self, key: Key, entry: _Key[T]) -> Verdict[T]:
        entry.state = _State.SYSTEMATIC
        held, entry.held = entry.held, []
        failure = entry.failure or ""  # always set: only a key holding failures gets here
        stop = Systematic(key=key, failure=failure, count=len(held), message=entry.message)
        return Verdict(requeue=held, stops=[stop])


class OutcomeFilter:
    """Between the workers and the checkpointer: holds the first permanent failures of each
    provider+model, writes them once it is healthy, gives them back (and stops the run) if systematic."""

    def __init__(
        self,
        *,
        write: Callable[[Outcome], None],
        stop: Callable[[str], None],
        enabled: bool = True,
        threshold: int = THRESHOLD,
    ) -> None:
        self._write = write
        self._stop = stop
        self._enabled = enabled
        self._tracker: SystematicFailures[Outcome] = SystematicFailures(threshold)

    @property
    def held(self) -> int:
        """Outcomes held back (their jobs are still ``running``, under this runner's leases)."""
        return self._tracker.held

    def add(self, job: ClaimedJob, outcome: Outcome) -> None:
        """An outcome of ``job``: written now, held, or given back."""
        key = (job.provider, job.model)
        if not self._enabled:
            self._write(outcome)
        elif outcome.state is JobState.SUCCEEDED:
            self._apply(self._tracker.succeeded(key, outcome))
        elif outcome.failure_class is not None:
            self._apply(self._tracker.failed(key, outcome.failure_class, outcome.error or "", outcome))
        else:
            self._write(outcome)

    def undecided(self) -> list[Key]:
        """See :meth:`SystematicFailures.undecided`."""
        return self._tracker.undecided()

    def settle(self, *, stop: bool, healthy: Collection[Key] = ()) -> None:
        """See :meth:`SystematicFailures.settle`."""
        self._apply(self._tracker.settle(stop=stop, healthy=healthy))

    def _apply(self, verdict: Verdict[Outcome]) -> None:
        for stop in verdict.stops:
            log.info("stopping: %s", stop.reason)
            self._stop(stop.reason)
        for outcome in verdict.write:
            self._write(outcome)
        for outcome in verdict.requeue:
            self._write(given_back(outcome))


def given_back(outcome: Outcome) -> Outcome:
    """``outcome`` as a job back to pending with its attempt refunded, the attempt marked as such."""
    attempt = dataclasses.replace(outcome.attempt, error_class=REFUNDED_CLASS)
    return dataclasses.replace(
        outcome,
        attempt=attempt,
        state=JobState.PENDING,
        refund_attempt=True,
        not_before=None,
        error_class=REFUNDED_CLASS,
    )
