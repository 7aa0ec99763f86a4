"""The price table and the cost of one call, in exact decimal US dollars.

Prices are USD per 1M tokens: ``input``, ``cached_input``, ``output``, ``cache_write`` and the batch
prices ``batch_input`` / ``batch_output``. The built-in table holds the public list prices (standard
tier, no priority/flex tier, short context) of current OpenAI, Anthropic, Gemini and Cohere models, with
the provider's batch price where it has a batch API; a configuration file can add models or replace
prices with :meth:`PriceTable.with_overrides` (``[prices."my-model"] input = 0.5, output = 1.5``).

Decisions:

- **Decimal, not float**: a run adds up millions of tiny amounts (``0.000435``); decimal arithmetic
  keeps every row and every total exact, so exports show ``0.000435``, not ``0.00043499999999999995``,
  and tests compare exact values. Convert with ``float()`` only at a boundary that needs it (the
  store's ``cost_usd`` column is a float).
- **Unknown model -> None, never a guess**: a fine-tuned model (``ft:gpt-4o-mini:...``), a local model
  behind an OpenAI-compatible server, or a model released after this table has no cost, and the
  ``status`` shows "unknown" rather than a made-up number. Override to price it.
- **Snapshots**: a dated snapshot costs what its base model costs, so ``gpt-4o-mini-2024-07-18``
  resolves to ``gpt-4o-mini`` and ``claude-3-5-haiku-20241022`` / ``claude-3-5-haiku-latest`` to
  ``claude-3-5-haiku``. An exact entry wins over that rule, for the snapshots priced differently
  from their base (``gpt-4o-2024-05-13``); an override of a base model covers its snapshots too.
- **Cached tokens** are a subset of the input tokens (OpenAI's ``prompt_tokens_details.cached_tokens``
  semantics, followed by :class:`~batchrunner.models.Usage` for every provider): ``input - cached`` are
  billed at ``input``, ``cached`` at ``cached_input`` (or at ``input`` when a model has no cache price).
  For Anthropic the adapter reports ``input = input_tokens + cache_read_input_tokens +
  cache_creation_input_tokens`` and ``cached = cache_read_input_tokens``, so cache reads get the cache
  price; cache *writes* (``Usage.cache_write_tokens``, Anthropic's ``cache_creation_input_tokens``) are
  billed at ``cache_write``, by default 1.25x ``input`` (Anthropic's 5-minute writes; its 1-hour writes
  cost 2x and are under-counted unless an override sets ``cache_write``).
- **Batch prices**: a job served through a provider's batch API (``run --mode batch``) is billed at
  ``batch_input`` / ``batch_output``: half the list price for OpenAI, Anthropic and Gemini. Cached
  reads and cache writes in a batch get the same discount as input (``rate x batch_input / input``).
  ``None`` means the provider sells no batch tier (Cohere's compatibility API); a configured model
  without batch prices gets half its list prices, the rule of every provider that has a batch API.
- **The fake provider's model** ``fake-model`` costs what ``gpt-4o-mini`` costs, so a cost rehearsal
  with ``--provider fake`` shows realistic numbers for a typical small model; to rehearse another
  model's bill, run the fake provider with that model's name (the fake answers any model).

Prices change: the table below was taken from openai.com/api/pricing, claude.com/pricing,
ai.google.dev/gemini-api/docs/pricing and cohere.com/pricing as of 2025-11 (``PRICES_AS_OF``). Check
them before relying on a bill; override what differs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final

from batchrunner.errors import ConfigError
from batchrunner.models import Usage

__all__ = ["BUILTIN_PRICES", "FAKE_MODEL", "PRICES_AS_OF", "ModelPrice", "PriceTable", "Rates", "format_usd"]

PRICES_AS_OF: Final = "2025-11"
"""When the built-in list prices were taken."""
FAKE_MODEL: Final = "fake-model"
"""The fake provider's model; priced like gpt-4o-mini."""


_PRICE_FIELDS: Final = ("input", "cached_input", "output", "cache_write", "batch_input", "batch_output")
"""The fields of a price, in the order configuration errors list them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelPrice:
    """USD per 1M tokens. ``cached_input=None``: cached input is billed at the ``input`` price;
    ``cache_write=None``: cache writes cost 1.25x ``input``; ``batch_input``/``batch_output`` ``None``: no
    batch price (the provider has no batch API)."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    batch_input: Decimal | None = None
    batch_output: Decimal | None = None

    def __post_init__(self) -> None:
        for name in _PRICE_FIELDS:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, Decimal) and value.is_finite() and value >= 0):
                raise ValueError(f"{name} must be a finite Decimal >= 0, not {value!r}")
        if (self.batch_input is None) != (self.batch_output is None):
            raise ValueError("batch_input and batch_output go together")

    @property
    def has_batch(self) -> bool:
        return self.batch_input is not None


_HALF: Final = Decimal("0.5")
_CACHE_WRITE_FACTOR: Final = Decimal("1.25")
"""Anthropic's 5-minute cache writes: 1.25x the input price."""


def _p(input: str, cached_input: str | None, output: str, *, batch: bool = True) -> ModelPrice:
    """A list price; ``batch``: the provider's batch API bills half of it (OpenAI, Anthropic, Gemini)."""
    list_input, list_output = Decimal(input), Decimal(output)
    return ModelPrice(
        input=list_input,
        output=list_output,
        cached_input=None if cached_input is None else Decimal(cached_input),
        batch_input=list_input * _HALF if batch else None,
        batch_output=list_output * _HALF if batch else None,
    )


def _cohere(input: str, output: str) -> ModelPrice:
    """Cohere over its OpenAI-compatible API: no prompt-cache price, no batch tier."""
    return _p(input, None, output, batch=False)


# List prices, USD per 1M tokens (input, cached input, output), taken 2025-11 (PRICES_AS_OF); batch
# prices are half of them unless the entry says otherwise.
_BUILTIN: Final[Mapping[str, ModelPrice]] = {
    # OpenAI: GPT-5
    "gpt-5": _p("1.25", "0.125", "10.00"),
    "gpt-5-mini": _p("0.25", "0.025", "2.00"),
    "gpt-5-nano": _p("0.05", "0.005", "0.40"),
    "gpt-5-chat-latest": _p("1.25", "0.125", "10.00"),
    "gpt-5.1": _p("1.25", "0.125", "10.00"),
    "gpt-5-pro": _p("15.00", None, "120.00"),
    # OpenAI: GPT-4.1 and GPT-4o
    "gpt-4.1": _p("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": _p("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.025", "0.40"),
    "gpt-4o": _p("2.50", "1.25", "10.00"),
    "gpt-4o-2024-05-13": _p("5.00", None, "15.00"),  # the first gpt-4o snapshot kept its launch price
    "chatgpt-4o-latest": _p("5.00", None, "15.00"),
    "gpt-4o-mini": _p("0.15", "0.075", "0.60"),
    # OpenAI: reasoning models
    "o1": _p("15.00", "7.50", "60.00"),
    "o1-mini": _p("1.10", "0.55", "4.40"),
    "o3": _p("2.00", "0.50", "8.00"),
    "o3-mini": _p("1.10", "0.55", "4.40"),
    "o3-pro": _p("20.00", None, "80.00"),
    "o4-mini": _p("1.10", "0.275", "4.40"),
    # OpenAI: older chat models still served
    "gpt-4-turbo": _p("10.00", None, "30.00"),
    "gpt-4": _p("30.00", None, "60.00"),
    "gpt-3.5-turbo": _p("0.50", None, "1.50"),
    # OpenAI: embeddings (no output tokens)
    "text-embedding-3-small": _p("0.02", None, "0"),
    "text-embedding-3-large": _p("0.13", None, "0"),
    "text-embedding-ada-002": _p("0.10", None, "0"),
    # Anthropic: cached input = cache reads (0.1x input)
    "claude-opus-4-5": _p("5.00", "0.50", "25.00"),
    "claude-opus-4-1": _p("15.00", "1.50", "75.00"),
    "claude-opus-4": _p("15.00", "1.50", "75.00"),
    "claude-opus-4-0": _p("15.00", "1.50", "75.00"),
    "claude-sonnet-4-5": _p("3.00", "0.30", "15.00"),
    "claude-sonnet-4": _p("3.00", "0.30", "15.00"),
    "claude-sonnet-4-0": _p("3.00", "0.30", "15.00"),
    "claude-haiku-4-5": _p("1.00", "0.10", "5.00"),
    "claude-3-7-sonnet": _p("3.00", "0.30", "15.00"),
    "claude-3-5-sonnet": _p("3.00", "0.30", "15.00"),
    "claude-3-5-haiku": _p("0.80", "0.08", "4.00"),
    "claude-3-opus": _p("15.00", "1.50", "75.00"),
    "claude-3-haiku": _p("0.25", "0.03", "1.25"),
    # Gemini (the gemini preset; prompts up to 200k tokens): cached input = context-cache reads
    "gemini-3-pro-preview": _p("2.00", "0.20", "12.00"),
    "gemini-2.5-pro": _p("1.25", "0.125", "10.00"),
    "gemini-2.5-flash": _p("0.30", "0.03", "2.50"),
    "gemini-2.5-flash-lite": _p("0.10", "0.01", "0.40"),
    "gemini-2.0-flash": _p("0.10", "0.025", "0.40"),
    "gemini-2.0-flash-lite": _p("0.075", None, "0.30"),
    "gemini-embedding-001": _p("0.15", None, "0"),
    # Cohere (the cohere preset)
    "command-a-03-2025": _cohere("2.50", "10.00"),
    "command-r-plus-08-2024": _cohere("2.50", "10.00"),
    "command-r-08-2024": _cohere("0.15", "0.60"),
    "command-r7b-12-2024": _cohere("0.0375", "0.15"),
    "embed-v4.0": _cohere("0.12", "0"),
    "embed-english-v3.0": _cohere("0.10", "0"),
    "embed-multilingual-v3.0": _cohere("0.10", "0"),
    # batchrunner's fake provider: priced like gpt-4o-mini so that rehearsals show real-looking costs
    FAKE_MODEL: _p("0.15", "0.075", "0.60"),
}

_SNAPSHOT_SUFFIX: Final = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
"""OpenAI's ``-2024-07-18``, Anthropic's ``-20241022`` and ``-latest``."""
_PER_TOKENS_EXPONENT: Final = -6  # prices are per 1M tokens


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceTable:
    """Model name -> price. Names are matched case-insensitively; see the module docstring for snapshots."""

    prices: Mapping[str, ModelPrice]

    def __post_init__(self) -> None:
        lowered = {name.strip().lower(): price for name, price in self.prices.items()}
        object.__setattr__(self, "prices", MappingProxyType(lowered))

    def with_overrides(self, overrides: Mapping[str, ModelPrice | Mapping[str, object]]) -> PriceTable:
        """A new table with ``overrides`` added or replacing prices (raw mappings come from config).

        A raw mapping needs ``input`` and ``output`` and may give ``cached_input`` (numbers or
        numeric strings, USD per 1M tokens); anything else raises :class:`ConfigError`.
        """
        merged = dict(self.prices)
        for model, value in overrides.items():
            merged[model.strip().lower()] = value if isinstance(value, ModelPrice) else _parse(model, value)
        return PriceTable(prices=merged)

    def resolve(self, model: str) -> str | None:
        """The table's name for ``model`` (itself, or its base model for a snapshot), or ``None``."""
        name = model.strip().lower()
        if name in self.prices:
            return name
        base = _SNAPSHOT_SUFFIX.sub("", name)
        return base if base != name and base in self.prices else None

    def price(self, model: str | None) -> ModelPrice | None:
        name = None if model is None else self.resolve(model)
        return None if name is None else self.prices[name]

    def cost(self, model: str | None, usage: Usage, *, batch: bool = False) -> Decimal | None:
        """USD for one call's ``usage`` (at the batch price when ``batch``); ``None`` for a model
        without a price, or without a batch price when ``batch``.

        Counts are made safe rather than trusted: negatives count as 0, and cached reads plus cache writes
        as at most the input tokens (some OpenAI-compatible servers report odd usage; a bill must not go
        negative).
        """
        rates = self.rates(model, batch=batch)
        if rates is None:
            return None
        input_tokens = max(0, usage.input_tokens)
        cached = min(max(0, usage.cached_tokens), input_tokens)
        written = min(max(0, usage.cache_write_tokens), input_tokens - cached)
        total = (input_tokens - cached - written) * rates.input + cached * rates.cached_input
        total += written * rates.cache_write + max(0, usage.output_tokens) * rates.output
        return total.scaleb(_PER_TOKENS_EXPONENT)

    def rates(self, model: str | None, *, batch: bool = False) -> Rates | None:
        """The per-1M-token rates one call of ``model`` is billed at, list or batch."""
        price = self.price(model)
        if price is None:
            return None
        cached = price.input if price.cached_input is None else price.cached_input
        write = price.input * _CACHE_WRITE_FACTOR if price.cache_write is None else price.cache_write
        if not batch:
            return Rates(input=price.input, cached_input=cached, cache_write=write, output=price.output)
        if price.batch_input is None or price.batch_output is None:
            return None
        discount = price.batch_input / price.input if price.input else Decimal(1)
        return Rates(
            input=price.batch_input,
            cached_input=cached * discount,
            cache_write=write * discount,
            output=price.batch_output,
        )

    def worst_case_cost(
        self, model: str | None, input_tokens_estimate: int, max_tokens: int, *, batch: bool = False
    ) -> Decimal | None:
        """The most one call can cost, for budget reservation: no cache hits and all ``max_tokens`` used."""
        rates = self.rates(model, batch=batch)
        if rates is None:
            return None
        total = max(0, input_tokens_estimate) * rates.input + max(0, max_tokens) * rates.output
        return total.scaleb(_PER_TOKENS_EXPONENT)


@dataclass(frozen=True, kw_only=True, slots=True)
class Rates:
    """What each kind of token of one call costs, USD per 1M tokens."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal


BUILTIN_PRICES: Final = PriceTable(prices=_BUILTIN)
"""The built-in list prices (see ``PRICES_AS_OF``)."""


def _parse(model: str, raw: Mapping[str, object]) -> ModelPrice:
    """A price from configuration, with errors that name the model and the field.

    Without ``batch_input``/``batch_output`` the batch price is half the list price (module docstring).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"prices.{model}: expected a table with input, output and cached_input")
    unknown = sorted(set(raw) - set(_PRICE_FIELDS))
    if unknown:
        raise ConfigError(
            f"prices.{model}: unknown field(s) {', '.join(unknown)} (use {', '.join(_PRICE_FIELDS)})"
        )
    for needed in ("input", "output"):
        if needed not in raw:
            raise ConfigError(f"prices.{model}: {needed} is required (USD per 1M tokens)")
    amounts = {name: _amount(model, name, raw[name]) for name in _PRICE_FIELDS if raw.get(name) is not None}
    if ("batch_input" in amounts) != ("batch_output" in amounts):
        raise ConfigError(f"prices.{model}: batch_input and batch_output go together")
    amounts.setdefault("batch_input", amounts["input"] * _HALF)
    amounts.setdefault("batch_output", amounts["output"] * _HALF)
    return ModelPrice(**amounts)


def _amount(model: str, field: str, value: object) -> Decimal:
    """A finite, non-negative USD amount; floats go through ``str`` so 0.15 is exactly 0.15."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigError(f"prices.{model}.{field}: expected a number, not {value!r}")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"prices.{model}.{field}: expected a number, not {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"prices.{model}.{field}: must be a finite number >= 0, not {value!r}")
    return amount


def format_usd(amount: float | Decimal) -> str:
    """Dollars as people read them, never rounded to zero: ``$1.2346``, ``$0.0042``, ``$0.0000031``."""
    value = float(amount)
    if value == 0 or abs(value) >= 0.001:
        return f"${value:,.4f}"
    digits = 1 - math.floor(math.log10(abs(value)))  # two significant digits
    return f"${value:.{digits}f}"
