"""The configured rate limits of one provider: what :class:`~batchrunner.policy.ratelimit.ProviderLimiter`
enforces (its module docstring says how each knob is used).

A plain frozen value, validated on construction, so configuration builds it without the limiter; it is
importable from :mod:`batchrunner.policy.ratelimit` too, beside the limiter that takes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchrunner.policy.retry import MAX_SERVER_DELAY_S

__all__ = ["RateLimits"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimits:
    """The configured limits of one provider (``None``: that limit is off)."""

    rpm: float | None = None
    tpm: float | None = None
    max_concurrency: int = 16
    min_concurrency: int = 1
    successes_per_increase: int = 10
    """Additive increase: one more slot after this many successes."""
    window_s: float = 1.0
    """The provider's quantum: a window holds ``per_minute * window_s / 60`` units."""
    guard_s: float = 0.025
    """Added to the window on our side, for jitter between our clock and the provider's."""
    default_pause_s: float = 1.0
    """The pause after a 429/529 without a usable ``Retry-After``."""
    max_pause_s: float = MAX_SERVER_DELAY_S
    pause_jitter_s: float = 1.0
    """A 429 pause ends ``uniform(0, min(pause_jitter_s, delay))`` later than asked, to desynchronise
    runners (proportional, so a 100 ms Retry-After is not stretched to a second)."""
    storm_count: int = 15
    """A 429 pauses the provider only when this many of the last ``storm_window`` answers were 429s."""
    storm_window: int = 100
    refund_unused: bool = False
    """Give unused reserved tokens back to the window (for providers that settle to actual usage)."""
    pace: bool = True
    """Space requests evenly (one every ``window / quantum``) instead of sending a quantum at once.

    A quantum admitted in one instant leaves the process over tens of milliseconds when the CPU is busy,
    so its last requests reach the provider later than the window assumed, and the next quantum can
    land in the provider's window with them (measured: 4-10 429s per 200 requests with three runners
    on two cores). Evenly spaced requests have no such queue. The rate is the same."""
    learn_from_headers: bool = False
    """Adopt the limits the provider advertises where none is configured, lower a configured one to
    them, and probe until the first answer (:mod:`batchrunner.policy.learnedlimits`); runs turn it on."""

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 (or None for no limit), not {value!r}")
        if not 1 <= self.min_concurrency <= self.max_concurrency:
            raise ValueError("concurrency limits must satisfy 1 <= min_concurrency <= max_concurrency")
        if self.successes_per_increase < 1:
            raise ValueError("successes_per_increase must be >= 1")
        if not 1 <= self.storm_count <= self.storm_window:
            raise ValueError("storm limits must satisfy 1 <= storm_count <= storm_window")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a finite number > 0, not {self.window_s!r}")
        for name in ("guard_s", "default_pause_s", "max_pause_s", "pause_jitter_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
