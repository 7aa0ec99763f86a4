"""What a run would cost and how long it would take, before anything is sent (``batchrunner estimate``).

The contract is docs/estimate.md. In short, per provider and model:

- **input tokens**: the offline estimate of :mod:`batchrunner.policy.tokens` (the one the rate limiter
  reserves), summed over the jobs;
- **output tokens**, two figures: the upper bound, every job using its whole ``max_tokens`` (or the
  default cap when it sets none), and the expected figure: the mean output of this run's answers of the
  same provider and model so far (never above a job's cap), else ``DEFAULT_OUTPUT_SHARE`` of the cap;
- **cost** at the list price and at the batch price (:mod:`batchrunner.policy.pricing`), expected and at
  most; a model without a price is named and its cost is unknown, never $0;
- **time**, per provider: the jobs and tokens over its configured requests- and tokens-per-minute
  limits, and, when the latency of a call is known (this run's answers, or the fake provider's
  configured latency), the jobs times that latency over the concurrency; the largest bound wins. The
  providers of a run are drained side by side, so the run takes as long as its slowest provider. In
  batch mode, jobs served by a batch API take up to the provider's 24-hour window instead.

Pure: the callers (``api/estimating.py``) read the jobs and the run's answers and hand them in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from batchrunner.models import Endpoint, Usage
from batchrunner.policy.pricing import PriceTable
from batchrunner.policy.tokens import estimate_tokens

__all__ = [
    "BATCH_WINDOW_S",
    "DEFAULT_OUTPUT_SHARE",
    "Answered",
    "Estimate",
    "JobTally",
    "Mode",
    "ModelEstimate",
    "Pace",
    "ProviderTime",
    "build_estimate",
    "labels",
]

Mode = Literal["realtime", "batch"]

DEFAULT_OUTPUT_SHARE: Final = 0.5
"""The expected output of a job, as a share of its cap, until the run has answers to measure."""
BATCH_WINDOW_S: Final = 24 * 3600.0
"""The providers' batch completion window: a batch may take up to this long."""


@dataclass(kw_only=True, slots=True)
class _ModelCount:
    jobs: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0


@dataclass(slots=True)
class JobTally:
    """The queued jobs, counted as they are read: jobs, input tokens and output caps per provider + model."""

    counts: dict[tuple[str, str | None], _ModelCount] = field(default_factory=dict)

    def add(
        self, provider: str, model: str | None, endpoint: Endpoint | str, body: Mapping[str, Any]
    ) -> None:
        estimate = estimate_tokens(endpoint, body)
        self.add_counted(provider, model, estimate.prompt_tokens, estimate.output_tokens)

    def add_counted(self, provider: str, model: str | None, prompt_tokens: int, output_tokens: int) -> None:
        """A job whose tokens are already estimated (a manifest line's ``JobSpec``)."""
        count = self.counts.setdefault((provider, model), _ModelCount())
        count.jobs += 1
        count.input_tokens += prompt_tokens
        count.max_output_tokens += output_tokens

    @property
    def jobs(self) -> int:
        return sum(count.jobs for count in self.counts.values())


@dataclass(frozen=True, kw_only=True, slots=True)
class Answered:
    """This run's answers so far for one provider + model: how many, their output and their latency."""

    results: int
    output_tokens: int
    mean_latency_ms: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Pace:
    """How fast one provider may be called: its configured limits, the concurrency and a known latency."""

    rpm: float | None = None
    tpm: float | None = None
    concurrency: int = 1
    latency_ms: float | None = None
    """The time one call takes, when known (the fake provider's configured latency)."""
    batch_api: bool = False
    """The provider has a batch API (its jobs go there in batch mode)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelEstimate:
    provider: str
    model: str | None
    jobs: int
    input_tokens: int
    max_output_tokens: int
    expected_output_tokens: int
    output_from_answers: bool
    """The expected output is this run's mean so far (else ``DEFAULT_OUTPUT_SHARE`` of the caps)."""
    list_cost_expected: Decimal | None
    list_cost_max: Decimal | None
    batch_cost_expected: Decimal | None
    """``None``: the model has no price, or no batch price."""
    batch_cost_max: Decimal | None
    in_batch: bool
    """In this estimate's mode, these jobs are served by a batch API (and billed at the batch price)."""

    @property
    def priced(self) -> bool:
        return self.list_cost_expected is not None

    @property
    def cost_expected(self) -> Decimal | None:
        """What these jobs are expected to cost in the estimate's mode."""
        return self.batch_cost_expected if self.in_batch else self.list_cost_expected

    @property
    def cost_max(self) -> Decimal | None:
        return self.batch_cost_max if self.in_batch else self.list_cost_max


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderTime:
    provider: str
    jobs: int
    seconds: float | None
    """``None``: nothing bounds it that we know of (no limits configured, no latency known)."""
    bound: str | None
    """What sets the time: ``rpm``, ``tpm``, ``concurrency`` or ``batch window``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Estimate:
    mode: Mode
    models: tuple[ModelEstimate, ...]
    times: tuple[ProviderTime, ...]

    @property
    def jobs(self) -> int:
        return sum(model.jobs for model in self.models)

    @property
    def input_tokens(self) -> int:
        return sum(model.input_tokens for model in self.models)

    @property
    def max_output_tokens(self) -> int:
        return sum(model.max_output_tokens for model in self.models)

    @property
    def expected_output_tokens(self) -> int:
        return sum(model.expected_output_tokens for model in self.models)

    @property
    def unpriced(self) -> tuple[str, ...]:
        """Models (``provider/model``) whose cost is unknown in this mode."""
        return tuple(_label(model) for model in self.models if model.cost_expected is None)

    def total(self, which: Literal["expected", "max"]) -> Decimal:
        """The cost of the priced jobs in this mode (see :attr:`unpriced` for the rest)."""
        costs = (model.cost_expected if which == "expected" else model.cost_max for model in self.models)
        return sum((cost for cost in costs if cost is not None), Decimal(0))

    def total_at(self, price: Literal["list", "batch"]) -> Decimal | None:
        """The expected cost of every job at one price; ``None`` when a model has no such price."""
        costs = [m.list_cost_expected if price == "list" else m.batch_cost_expected for m in self.models]
        if any(cost is None for cost in costs):
            return None
        return sum((cost for cost in costs if cost is not None), Decimal(0))

    @property
    def seconds(self) -> float | None:
        """How long the run would take: its slowest provider; ``None`` if one is unbounded."""
        if not self.times or any(time.seconds is None for time in self.times):
            return None
        return max(time.seconds or 0.0 for time in self.times)


def build_estimate(
    tally: JobTally,
    *,
    prices: PriceTable,
    paces: Mapping[str, Pace],
    answered: Mapping[tuple[str, str | None], Answered] | None = None,
    mode: Mode = "realtime",
) -> Estimate:
    """The estimate of ``tally``'s jobs (see the module docstring); ``paces`` has every provider's."""
    answered = answered or {}
    models = tuple(
        _model_estimate(
            provider, model, count, prices, answered.get((provider, model)), paces[provider], mode
        )
        for (provider, model), count in sorted(tally.counts.items(), key=lambda item: _sort_key(item[0]))
    )
    providers = sorted({model.provider for model in models})
    times = tuple(
        _provider_time(provider, [m for m in models if m.provider == provider], paces[provider], answered)
        for provider in providers
    )
    return Estimate(mode=mode, models=models, times=times)


def _model_estimate(
    provider: str,
    model: str | None,
    count: _ModelCount,
    prices: PriceTable,
    answered: Answered | None,
    pace: Pace,
    mode: Mode,
) -> ModelEstimate:
    from_answers = answered is not None and answered.results > 0
    if answered is not None and from_answers:
        mean = answered.output_tokens / answered.results
        expected = min(count.max_output_tokens, round(mean * count.jobs))
    else:
        expected = math.ceil(count.max_output_tokens * DEFAULT_OUTPUT_SHARE)

    def cost(output: int, *, batch: bool) -> Decimal | None:
        return prices.cost(model, Usage(input_tokens=count.input_tokens, output_tokens=output), batch=batch)

    return ModelEstimate(
        provider=provider,
        model=model,
        jobs=count.jobs,
        input_tokens=count.input_tokens,
        max_output_tokens=count.max_output_tokens,
        expected_output_tokens=expected,
        output_from_answers=from_answers,
        list_cost_expected=cost(expected, batch=False),
        list_cost_max=cost(count.max_output_tokens, batch=False),
        batch_cost_expected=cost(expected, batch=True),
        batch_cost_max=cost(count.max_output_tokens, batch=True),
        in_batch=mode == "batch" and pace.batch_api,
    )


def _provider_time(
    provider: str,
    models: list[ModelEstimate],
    pace: Pace,
    answered: Mapping[tuple[str, str | None], Answered],
) -> ProviderTime:
    jobs = sum(model.jobs for model in models)
    if models and all(model.in_batch for model in models):
        return ProviderTime(provider=provider, jobs=jobs, seconds=BATCH_WINDOW_S, bound="batch window")
    tokens = sum(model.input_tokens + model.expected_output_tokens for model in models)
    bounds: list[tuple[float, str]] = []
    if pace.rpm is not None:
        bounds.append((jobs / pace.rpm * 60.0, "rpm"))
    if pace.tpm is not None:
        bounds.append((tokens / pace.tpm * 60.0, "tpm"))
    latency = pace.latency_ms if pace.latency_ms is not None else _mean_latency(provider, answered)
    if latency is not None:
        bounds.append((jobs * latency / 1000.0 / max(1, pace.concurrency), "concurrency"))
    if not bounds:
        return ProviderTime(provider=provider, jobs=jobs, seconds=None, bound=None)
    seconds, bound = max(bounds)
    return ProviderTime(provider=provider, jobs=jobs, seconds=seconds, bound=bound)


def _mean_latency(provider: str, answered: Mapping[tuple[str, str | None], Answered]) -> float | None:
    """The mean latency of this provider's answers so far, over all its models."""
    timed = [(a.results, a.mean_latency_ms) for (p, _), a in answered.items() if p == provider]
    weighted = [(n, ms) for n, ms in timed if ms is not None and n > 0]
    total = sum(n for n, _ in weighted)
    return sum(n * ms for n, ms in weighted) / total if total else None


def _label(model: ModelEstimate) -> str:
    return f"{model.provider}/{model.model or '(no model)'}"


def _sort_key(key: tuple[str, str | None]) -> tuple[str, str]:
    return key[0], key[1] or ""


def labels(models: Iterable[ModelEstimate]) -> list[str]:
    """``provider/model`` of each model, as the estimate names them."""
    return [_label(model) for model in models]
