"""The fake server's settings: one frozen value, validated once when it is built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from batchrunner.fakeserver.faults import FaultKind, FaultPlan

HOST = "127.0.0.1"
"""The only address the fake server binds: it is a test double, never a service on the network."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeServerConfig:
    """How the fake provider server behaves; each field has a ``fake-server`` flag of the same name."""

    port: int = 0
    """TCP port on 127.0.0.1; 0 picks a free one."""
    api_key: str | None = None
    """The key a request must carry; ``None`` accepts any non-empty key."""
    latency_ms: float = 0.0
    """Delay before every answer (and every injected fault), in milliseconds."""
    jitter_ms: float = 0.0
    """Extra delay, uniform in [0, jitter_ms]; deterministic per (prompt, attempt) when ``seed`` is set."""
    seed: int | None = None
    """Makes random faults and jitter a function of (seed, prompt key, attempt number)."""
    fault_rates: Mapping[FaultKind, float] = field(default_factory=dict)
    """Probability of each fault kind per request; they must sum to at most 1."""
    schedule: Mapping[str, FaultPlan] = field(default_factory=dict)
    """Prompt key -> fault per attempt (``--schedule FILE``); it wins over a directive in the prompt."""
    retry_after_s: float = 1.0
    """The wait announced by injected 429s (``retry-after``, rounded up, and ``retry-after-ms``)."""
    max_hang_s: float = 300.0
    """A ``hang`` gives up after this long (and resets the connection), so the server always ends clean."""
    rpm: int | None = None
    """Requests per minute, enforced over ``window_s``; ``None`` for no limit."""
    tpm: int | None = None
    """Tokens (input estimate + max_tokens) per minute, enforced over ``window_s``; ``None`` for no limit."""
    window_s: float = 1.0
    """The sliding window of the limits: at most ``rpm * window_s / 60`` requests in any such window."""
    embedding_dim: int = 8
    """Length of the embedding vectors (a request's ``dimensions`` overrides it)."""
    default_max_tokens: int = 1024
    """Output cap (and TPM charge) for OpenAI requests that give no ``max_tokens``."""
    event_gap_ms: float = 0.0
    """A streamed answer's pause between two SSE events (after ``latency_ms`` before the first)."""
    cut_after_events: int | None = None
    """The ``truncate`` fault cuts a stream after this many events (``None``: half of them)."""
    batch_seconds: float = 2.0
    """How long a provider batch (OpenAI Batch API, Anthropic Message Batches) takes to run its lines,
    which complete evenly over this time (docs/batch-wire.md)."""
    batch_expire_fraction: float | None = None
    """Every batch expires once this fraction of its lines is done (the rest are expired lines);
    ``None``: batches never expire."""
    batch_api_faults: FaultPlan | None = None
    """Faults for the batch API's own requests (files, batches, message batches) by their number since
    start or ``POST /reset``: ``"429,ok,500"`` (``--batch-api-faults``, the plan syntax of :mod:`.faults`)."""

    def __post_init__(self) -> None:
        rates = MappingProxyType({FaultKind(kind): float(rate) for kind, rate in self.fault_rates.items()})
        object.__setattr__(self, "fault_rates", rates)
        object.__setattr__(self, "schedule", MappingProxyType(dict(self.schedule)))
        problems = self._problems()
        if problems:
            raise ValueError("; ".join(problems))

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in 0..65535, not {self.port}")
        if self.api_key == "":
            problems.append("api_key must be None (accept any key) or a non-empty string")
        for name in (
            "latency_ms",
            "jitter_ms",
            "retry_after_s",
            "max_hang_s",
            "event_gap_ms",
            "batch_seconds",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0, not {value}")
        if not math.isfinite(self.window_s) or self.window_s <= 0:
            problems.append(f"window_s must be > 0, not {self.window_s}")
        for name, low, value in (
            ("rpm", 1, 1 if self.rpm is None else self.rpm),
            ("tpm", 1, 1 if self.tpm is None else self.tpm),
            ("embedding_dim", 1, self.embedding_dim),
            ("default_max_tokens", 1, self.default_max_tokens),
            ("cut_after_events", 0, 0 if self.cut_after_events is None else self.cut_after_events),
        ):
            if value < low:
                problems.append(f"{name} must be >= {low}, not {value}")
        fraction = self.batch_expire_fraction
        if fraction is not None and not 0 <= fraction < 1:
            problems.append(f"batch_expire_fraction must be in [0, 1), not {fraction}")
        if self.embedding_dim > 65536:
            problems.append(f"embedding_dim must be at most 65536, not {self.embedding_dim}")
        return problems + self._rate_problems()

    def _rate_problems(self) -> list[str]:
        problems = [
            f"the probability of fault {kind.value} must be in [0, 1], not {rate}"
            for kind, rate in self.fault_rates.items()
            if not 0 <= rate <= 1
        ]
        if sum(self.fault_rates.values()) > 1 + 1e-9:
            problems.append("fault probabilities must sum to at most 1")
        return problems

    @property
    def has_limits(self) -> bool:
        return self.rpm is not None or self.tpm is not None
