"""What a runner is given (its options and parts) and what it gives back (how the run ended)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from batchrunner.engine.crashpoints import CrashPoint, never
from batchrunner.engine.liveness import STALE_AFTER_S
from batchrunner.engine.progress import Progress
from batchrunner.models import RunStats
from batchrunner.policy.pricing import PriceTable
from batchrunner.policy.ratelimit import ProviderLimiter, RateLimits
from batchrunner.policy.retry import RetryPolicy
from batchrunner.providers.base import Provider

LEASE_MARGIN_S = 30.0
OUTER_DEADLINE_MARGIN_S = 5.0
"""The outer per-attempt deadline is the client timeout plus this: an SDK that hangs past its own
timeout is still cut off, and reported (docs/reliability.md rule 8)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineOptions:
    """How one runner drains a run: its values and its pure policies (the retry policy; the rate limits
    come per provider through :attr:`Wiring.limits_for`)."""

    concurrency: int = 32
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """What to do after a failed attempt (backoff, Retry-After, the attempts a job may have)."""
    timeout_s: float = 300.0
    max_cost_usd: Decimal | None = None
    heartbeat_s: float = 5.0
    stale_after_s: float = STALE_AFTER_S
    """A runner whose heartbeat is older than this is dead, wherever it ran."""
    checkpoint_gap_s: float = 0.02
    """Checkpoint writes start at most this often; an answer waits about this long to be durable."""
    grace_s: float = 30.0
    """How long calls in flight may finish after a stop request."""
    poll_s: float = 1.0
    cancel_poll_s: float = 0.5
    """How often a runner checks whether its run was cancelled."""
    stop_on_systematic: bool = True
    """Stop the run when a provider+model's first answers all fail alike
    (:mod:`batchrunner.engine.systematic`)."""
    providers: frozenset[str] | None = None
    """Only the jobs of these providers (``None``: all): in batch mode the others are their batches'."""

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts

    @property
    def lease_s(self) -> float:
        """Longer than an attempt can last, so a live runner never loses a lease between heartbeats."""
        return self.timeout_s + OUTER_DEADLINE_MARGIN_S + LEASE_MARGIN_S


@dataclass(frozen=True, kw_only=True, slots=True)
class RunReport:
    """How a ``run`` ended."""

    stats: RunStats
    stopped: str | None = None
    """Why the run was stopped (auth, quota, budget, store), if it was."""
    interrupted: bool = False
    cancelled: bool = False
    """The run was cancelled while this runner drained it (``stopped`` says so too)."""
    lost_leases: int = 0
    """Answers that came back after their lease was lost (recorded by whoever holds the job now)."""
    db: str | None = None
    """The database of the run, and how many runs it holds (for the hints the CLI prints)."""
    runs_in_db: int = 1
    dropped_unsent: int = 0
    """Jobs whose lease was lost before they were sent (this runner was away): not sent, not paid for."""
    batches_live: int = 0
    """Provider batches still running at the provider when the run returned (``--no-wait``, Ctrl-C)."""

    @property
    def exit_code(self) -> int:
        """docs/design.md "Exit codes"."""
        if self.interrupted:
            return 130
        if self.stopped:
            return 3
        return 1 if self.stats.by_state.get("failed") else 0


def default_limiter(limits: RateLimits, name: str) -> ProviderLimiter:
    """The limiter of provider ``name``: the engine's own (a benchmark may wire a variant)."""
    return ProviderLimiter(limits, name=name)


@dataclass(kw_only=True, slots=True)
class Wiring:
    """The parts a runner is built from (api.py wires them from the settings)."""

    provider_for: Callable[[str], Provider]
    limits_for: Callable[[str], RateLimits]
    limiter: Callable[[RateLimits, str], ProviderLimiter] = lambda limits, name: ProviderLimiter(
        limits, name=name
    )
    """Builds a provider's limiter from its limits and name (a benchmark may pass a variant)."""
    prices: PriceTable
    progress: Progress | None = None
    crash_point: CrashPoint = never
    rng: random.Random | None = None
    journal_dir: Path | None = None
    """Where runners on this machine keep their send journals (batchrunner.engine.sendjournal)."""
