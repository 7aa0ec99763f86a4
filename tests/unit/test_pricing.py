"""The price table: snapshot names, exact costs, overrides from configuration."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batchrunner.errors import ConfigError
from batchrunner.models import Usage
from batchrunner.policy.pricing import BUILTIN_PRICES, FAKE_MODEL, ModelPrice, PriceTable
from batchrunner.providers.anthropic_wire import usage_of as anthropic_usage_of

# (model as a job names it, the table entry it resolves to, or None)
NAMES: list[tuple[str, str | None]] = [
    # base names resolve to themselves
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),
    # OpenAI dated snapshots resolve to their base model
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
    ("o3-2025-04-16", "o3"),
    ("gpt-5-2025-08-07", "gpt-5"),
    # ... except a snapshot priced differently from its base, which has its own entry
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    # Anthropic dated snapshots and -latest aliases
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    # names are matched case-insensitively, surrounding spaces ignored
    (" GPT-4o ", "gpt-4o"),
    # the fake provider's model has a price
    (FAKE_MODEL, FAKE_MODEL),
    # unknown models are unknown: never a guess
    ("ft:gpt-4o-mini-2024-07-18:acme::abc123", None),  # fine-tuned: priced differently
    ("meta-llama/Llama-3.1-8B-Instruct", None),  # a local model behind an OpenAI-compatible server
    ("gpt-4o-mini-turbo", None),  # a suffix that is not a snapshot
    ("gpt-99-2031-01-01", None),  # a snapshot of a model we do not know
    ("-latest", None),
    ("", None),
]


@pytest.mark.parametrize(("model", "entry"), NAMES)
def test_resolve(model: str, entry: str | None) -> None:
    assert BUILTIN_PRICES.resolve(model) == entry
    assert (BUILTIN_PRICES.price(model) is None) is (entry is None)


# (model, usage, exact USD)
COSTS: list[tuple[str, Usage, Decimal]] = [
    # gpt-4o-mini: 800 uncached * 0.15 + 200 cached * 0.075 + 500 out * 0.60 = 435 per 1M
    ("gpt-4o-mini", Usage(input_tokens=1000, cached_tokens=200, output_tokens=500), Decimal("0.000435")),
    # a snapshot costs what its base costs
    (
        "gpt-4o-mini-2024-07-18",
        Usage(input_tokens=1000, cached_tokens=200, output_tokens=500),
        Decimal("0.000435"),
    ),
    # gpt-4o: 1M input and 1M output = 2.50 + 10.00
    ("gpt-4o", Usage(input_tokens=1_000_000, output_tokens=1_000_000), Decimal("12.50")),
    # the old gpt-4o snapshot has no cache price: cached tokens pay the input price (5.00)
    ("gpt-4o-2024-05-13", Usage(input_tokens=1_000_000, cached_tokens=1_000_000), Decimal("5.00")),
    # gpt-5: 10,000 in of which 8,000 cached, 2,000 out = 2,000*1.25 + 8,000*0.125 + 2,000*10 = 23,500
    ("gpt-5", Usage(input_tokens=10_000, cached_tokens=8_000, output_tokens=2_000), Decimal("0.0235")),
    # embeddings: input only, 0.02 per 1M
    ("text-embedding-3-small", Usage(input_tokens=123_456), Decimal("0.00246912")),
    # Anthropic: input 2,000 + cache read 3,000 (reported as input 5,000, cached 3,000), 400 out, Sonnet 4.5
    # = 2,000*3 + 3,000*0.30 + 400*15 = 12,900
    (
        "claude-sonnet-4-5-20250929",
        Usage(input_tokens=5_000, cached_tokens=3_000, output_tokens=400),
        Decimal("0.0129"),
    ),
    # Haiku 3.5: 1,000 in, 1,000 out = 800 + 4,000
    ("claude-3-5-haiku-latest", Usage(input_tokens=1_000, output_tokens=1_000), Decimal("0.0048")),
    # the fake model costs what gpt-4o-mini costs
    (FAKE_MODEL, Usage(input_tokens=1000, cached_tokens=200, output_tokens=500), Decimal("0.000435")),
    # nothing used costs nothing
    ("o4-mini", Usage(), Decimal("0")),
    # odd usage is made safe: cached above input counts as all cached, negatives as 0
    ("gpt-4o-mini", Usage(input_tokens=100, cached_tokens=500, output_tokens=-3), Decimal("0.0000075")),
]


@pytest.mark.parametrize(("model", "usage", "expected"), COSTS)
def test_cost(model: str, usage: Usage, expected: Decimal) -> None:
    cost = BUILTIN_PRICES.cost(model, usage)
    assert isinstance(cost, Decimal)
    assert cost == expected


def test_cost_of_unknown_model_is_none() -> None:
    assert BUILTIN_PRICES.cost("my-local-llama", Usage(input_tokens=10)) is None
    assert BUILTIN_PRICES.cost(None, Usage(input_tokens=10)) is None
    assert BUILTIN_PRICES.worst_case_cost("my-local-llama", 10, 10) is None


def test_costs_add_up_exactly() -> None:
    # many tiny costs sum without float drift
    one = BUILTIN_PRICES.cost("gpt-4o-mini", Usage(input_tokens=1, output_tokens=1))
    assert one == Decimal("0.00000075")
    assert sum([one] * 100_000, Decimal(0)) == Decimal("0.075")


# (model, input estimate, max_tokens, exact USD)
WORST_CASES: list[tuple[str, int, int, Decimal]] = [
    # gpt-4o-mini: 1,000 in at the full input price (no cache assumed) + 1,024 out = 150 + 614.4
    ("gpt-4o-mini", 1_000, 1_024, Decimal("0.0007644")),
    # Opus 4.1: 10,000 in + 4,096 out = 150,000 + 307,200
    ("claude-opus-4-1", 10_000, 4_096, Decimal("0.4572")),
    # embeddings reserve no output
    ("text-embedding-3-large", 1_000_000, 0, Decimal("0.13")),
    # negative estimates count as 0
    ("gpt-4o", -5, -5, Decimal("0")),
]


@pytest.mark.parametrize(("model", "prompt", "max_tokens", "expected"), WORST_CASES)
def test_worst_case_cost(model: str, prompt: int, max_tokens: int, expected: Decimal) -> None:
    assert BUILTIN_PRICES.worst_case_cost(model, prompt, max_tokens) == expected


def test_worst_case_bounds_the_real_cost() -> None:
    usage = Usage(input_tokens=900, cached_tokens=600, output_tokens=700)
    worst = BUILTIN_PRICES.worst_case_cost("gpt-4.1", 900, 1_000)
    cost = BUILTIN_PRICES.cost("gpt-4.1", usage)
    assert worst is not None and cost is not None
    assert cost <= worst


def test_overrides_add_and_replace_prices() -> None:
    table = BUILTIN_PRICES.with_overrides(
        {
            "My-Local-Model": {"input": 0.1, "output": "0.3"},  # a new model, names case-insensitive
            "gpt-4o": {"input": 2, "cached_input": 1, "output": 8},  # a negotiated price
            "o3": ModelPrice(input=Decimal("1"), output=Decimal("4")),  # or a ready ModelPrice
        }
    )
    assert table.cost("my-local-model", Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == Decimal(
        "0.4"
    )
    # an override of a base model covers its snapshots
    assert table.cost("gpt-4o-2024-11-20", Usage(input_tokens=1_000_000, cached_tokens=1_000_000)) == Decimal(
        1
    )
    # ... but not a snapshot with an entry of its own
    assert table.price("gpt-4o-2024-05-13") == BUILTIN_PRICES.price("gpt-4o-2024-05-13")
    # no cached price: cached tokens at the input price
    assert table.cost("o3", Usage(input_tokens=1_000_000, cached_tokens=500_000)) == Decimal(1)
    # floats are read through str: 0.1 is exactly 0.1
    assert table.prices["my-local-model"].input == Decimal("0.1")
    # the built-in table is unchanged
    assert BUILTIN_PRICES.resolve("my-local-model") is None
    assert BUILTIN_PRICES.cost("gpt-4o", Usage(input_tokens=1_000_000)) == Decimal("2.50")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"input": 1}, "output is required"),  # a forgotten output price would under-count
        ({"input": 1, "output": 1, "cache": 1}, "unknown field"),  # a typo is an error, not ignored
        ({"input": -1, "output": 1}, "finite number >= 0"),
        ({"input": "nan", "output": 1}, "finite number >= 0"),
        ({"input": "cheap", "output": 1}, "expected a number"),
        ({"input": True, "output": 1}, "expected a number"),
        ({"input": [1], "output": 1}, "expected a number"),
        ({"input": 1, "output": 1, "batch_input": 0.5}, "go together"),  # half a batch price is a mistake
        ("1.5", "expected a table"),
    ],
)
def test_bad_overrides_are_config_errors(override: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        BUILTIN_PRICES.with_overrides({"my-model": override})  # type: ignore[dict-item]
    assert "prices.my-model" in str(caught.value)


def test_model_price_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        ModelPrice(input=Decimal("-1"), output=Decimal(0))
    with pytest.raises(ValueError):
        ModelPrice(input=Decimal("Infinity"), output=Decimal(0))


def test_builtin_table_is_sane() -> None:
    assert len(BUILTIN_PRICES.prices) >= 30
    for name, price in BUILTIN_PRICES.prices.items():
        assert name == name.strip().lower()
        if price.cached_input is not None:  # caching is a discount
            assert price.cached_input < price.input, name
    with pytest.raises(TypeError):
        BUILTIN_PRICES.prices["gpt-4o"] = ModelPrice(input=Decimal(0), output=Decimal(0))  # type: ignore[index]
    assert PriceTable(prices={"A": ModelPrice(input=Decimal(1), output=Decimal(1))}).resolve("a") == "a"


# (model, usage, exact USD at the batch price): half the list price; cache reads and writes discounted alike
BATCH_COSTS: list[tuple[str, Usage, Decimal]] = [
    # gpt-4o-mini batch: 1,000 in x 0.075 + 500 out x 0.30 = 75 + 150 = 225 per 1M
    ("gpt-4o-mini", Usage(input_tokens=1000, output_tokens=500), Decimal("0.000225")),
    # claude-sonnet-4-5 batch: (1,000 - 400 cached) x 1.50 + 400 x 0.15 + 200 out x 7.50 = 900 + 60 + 1,500
    ("claude-sonnet-4-5", Usage(input_tokens=1000, cached_tokens=400, output_tokens=200), Decimal("0.00246")),
    # gemini-2.5-flash batch: 2,000 in x 0.15 + 1,000 out x 1.25 = 300 + 1,250
    ("gemini-2.5-flash", Usage(input_tokens=2000, output_tokens=1000), Decimal("0.00155")),
    # a cache write in a batch: 1,000 written x 1.25 x 1.50 = 1,875
    ("claude-sonnet-4-5", Usage(input_tokens=1000, cache_write_tokens=1000), Decimal("0.001875")),
]


@pytest.mark.parametrize(("model", "usage", "expected"), BATCH_COSTS)
def test_batch_cost(model: str, usage: Usage, expected: Decimal) -> None:
    assert BUILTIN_PRICES.cost(model, usage, batch=True) == expected
    list_cost = BUILTIN_PRICES.cost(model, usage)
    assert list_cost is not None and list_cost == 2 * expected


def test_cache_writes_cost_a_quarter_more_than_input() -> None:
    # claude-haiku-4-5: 1,000 input of which 600 written to the cache and 300 read from it, 100 out
    # 100 plain x 1.00 + 600 x 1.25 + 300 x 0.10 + 100 out x 5.00 = 100 + 750 + 30 + 500 = 1,380 per 1M
    usage = Usage(input_tokens=1000, cache_write_tokens=600, cached_tokens=300, output_tokens=100)
    assert BUILTIN_PRICES.cost("claude-haiku-4-5", usage) == Decimal("0.00138")
    # writes above what is left of the input after the reads are capped (odd usage never bills more input)
    odd = Usage(input_tokens=100, cache_write_tokens=500, cached_tokens=50)
    assert BUILTIN_PRICES.cost("claude-haiku-4-5", odd) == Decimal("0.0000675")  # 50 x 1.25 + 50 x 0.10


def test_cohere_has_no_batch_price_and_gemini_has() -> None:
    assert BUILTIN_PRICES.cost("command-a-03-2025", Usage(input_tokens=1_000_000)) == Decimal("2.50")
    assert BUILTIN_PRICES.cost("command-a-03-2025", Usage(input_tokens=1), batch=True) is None
    assert BUILTIN_PRICES.worst_case_cost("command-r-08-2024", 1, 1, batch=True) is None
    assert BUILTIN_PRICES.cost("gemini-2.5-pro", Usage(output_tokens=1_000_000), batch=True) == Decimal(
        "5.00"
    )


def test_overrides_may_set_batch_and_cache_write_prices() -> None:
    table = BUILTIN_PRICES.with_overrides(
        {"my-model": {"input": 1, "output": 2, "batch_input": "0.6", "batch_output": 1.2, "cache_write": 3}}
    )
    assert table.cost(
        "my-model", Usage(input_tokens=1_000_000, output_tokens=1_000_000), batch=True
    ) == Decimal("1.8")
    # the cache write price set, and discounted in a batch by batch_input / input
    assert table.cost("my-model", Usage(input_tokens=1_000_000, cache_write_tokens=1_000_000)) == Decimal(3)
    assert table.cost(
        "my-model", Usage(input_tokens=1_000_000, cache_write_tokens=1_000_000), batch=True
    ) == Decimal("1.8")


def test_anthropic_usage_carries_cache_writes() -> None:
    usage = anthropic_usage_of(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 300,
            "cache_creation_input_tokens": 600,
            "output_tokens": 5,
        }
    )
    assert usage == Usage(input_tokens=910, cached_tokens=300, cache_write_tokens=600, output_tokens=5)
