"""``batchrunner estimate`` and the text and JSON every estimate is printed as (``run --dry-run`` too)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from batchrunner.cli.common import (
    config_option,
    db_option,
    log_format_option,
    resolve_settings,
    run_verb,
    verbose_option,
)

if TYPE_CHECKING:
    from batchrunner.policy.estimate import Estimate, ModelEstimate

NAME_WIDTH: Final = 30
"""The widest ``provider/model`` kept on its row; a longer one gets a row of its own (80 columns)."""


@click.command("estimate")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--run", "run_name", metavar="NAME", help="Estimate a run's pending jobs [default: the latest]."
)
@click.option(
    "--mode",
    type=click.Choice(["realtime", "batch"]),
    default="realtime",
    show_default=True,
    help="batch: jobs of providers with a batch API at its price (half) and its 24 h window.",
)
@click.option("--provider", help="Provider for FILE's lines that name none.")
@click.option("--model", help="Model for FILE's simple lines that name none.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight [default: 32].")
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), help="Requests per minute, per provider.")
@click.option("--tpm", type=click.FloatRange(min=0, min_open=True), help="Tokens per minute, per provider.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON (stable keys) on stdout.")
@db_option
@config_option
@verbose_option
@log_format_option
def estimate(
    file: str | None,
    run_name: str | None,
    mode: str,
    as_json: bool,
    config_path: Path | None,
    verbose: bool,
    **flags: Any,
) -> None:
    """What FILE's jobs, or a run's pending ones, would cost and take. Nothing is queued or sent.

    \b
    batchrunner estimate jobs.jsonl               a manifest, before submitting it
    batchrunner estimate --run jobs --mode batch  a queued run, at the batch price

    Input tokens are estimated offline; output tokens are shown at most (every job using its max_tokens)
    and expected (this run's mean answer so far, else half of max_tokens). Costs come from the price
    table (a model without a price is named, never counted as $0); the time from the rpm/tpm limits and
    the concurrency.
    """
    from batchrunner import api

    if file is not None and run_name is not None:
        raise click.UsageError("give FILE or --run, not both")
    settings = resolve_settings(flags, config_path, verbose)
    result = run_verb(
        api.estimate(file, settings=settings, run=run_name, mode=mode),  # type: ignore[arg-type]
        verbose,
    )
    heading = f"{file}: {result.jobs:,} job(s)" if file else f"{result.jobs:,} pending job(s)"
    click.echo(estimate_json(result) if as_json else render_estimate(result, heading))


def one_line(estimate: Estimate) -> str:
    """The estimate in a line, for ``submit``."""
    unpriced = f"; no price for {', '.join(estimate.unpriced)}" if estimate.unpriced else ""
    return (
        f"estimate: ~{estimate.input_tokens:,} input tokens, about {_usd(estimate.total('expected'))} "
        f"(at most {_usd(estimate.total('max'))}) at the list price{unpriced}"
    )


def render_estimate(estimate: Estimate, heading: str) -> str:
    """The estimate as text that fits 80 columns."""
    lines = [f"{heading}; nothing sent ({estimate.mode} mode)", ""]
    if not estimate.models:
        return "\n".join([*lines, "nothing to estimate: no pending jobs"])
    lines += _table(
        ("tokens", "jobs", "input", "output max", "expected"),
        [
            (
                _label(m),
                _n(m.jobs),
                _n(m.input_tokens),
                _n(m.max_output_tokens),
                _n(m.expected_output_tokens)
                + ("" if m.output_from_answers or not m.max_output_tokens else "*"),
            )
            for m in estimate.models
        ],
        (
            "total",
            _n(estimate.jobs),
            _n(estimate.input_tokens),
            _n(estimate.max_output_tokens),
            _n(estimate.expected_output_tokens),
        ),
    )
    if any(not m.output_from_answers and m.max_output_tokens for m in estimate.models):
        lines.append("* half of max_tokens: no answers of this model yet to measure")
    lines += ["", *_table(("cost: expected (at most)", "list price", "batch price"), _cost_rows(estimate))]
    lines += ["", *_bottom_line(estimate)]
    return "\n".join(lines)


def _cost_rows(estimate: Estimate) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        (
            _label(m),
            _cost(m.list_cost_expected, m.list_cost_max, m.priced),
            _cost(m.batch_cost_expected, m.batch_cost_max, m.priced) if m.priced else "unknown",
        )
        for m in estimate.models
    ]
    if len(estimate.models) > 1:
        list_total = estimate.total_at("list")
        batch_total = estimate.total_at("batch")
        rows.append(("total", _usd(list_total) if list_total is not None else "-", _usd(batch_total) or "-"))
    return rows


def _bottom_line(estimate: Estimate) -> list[str]:
    lines = []
    batch = [m for m in estimate.models if m.in_batch]
    in_batch = sum(m.jobs for m in batch)
    how = (
        "every job at the list price"
        if not batch
        else "every job at the batch price"
        if in_batch == estimate.jobs
        else f"{in_batch:,} job(s) at the batch price, {estimate.jobs - in_batch:,} in real time at the list "
        "price: their providers have no batch API"
    )
    lines.append(
        f"you would pay: about {_usd(estimate.total('expected'))}, "
        f"at most {_usd(estimate.total('max'))} ({how})"
    )
    if estimate.unpriced:
        lines.append(f"  not counted, no price: {', '.join(estimate.unpriced)} (set [prices] to count them)")
    for time in estimate.times:
        lines.append(f"time, {time.provider}: {_time(time.seconds, time.bound)} for {time.jobs:,} job(s)")
    return lines


def _table(
    header: tuple[str, ...], rows: list[tuple[str, ...]], total: tuple[str, ...] | None = None
) -> list[str]:
    body = [*rows, *([total] if total and len(rows) > 1 else [])]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(1, len(header))]
    name_width = min(NAME_WIDTH, max(len(row[0]) for row in [header, *body]))
    out = []
    for row in [header, *body]:
        figures = "  ".join(cell.rjust(width) for cell, width in zip(row[1:], widths, strict=True))
        if len(row[0]) > name_width:
            out.append(row[0])
            out.append(" " * name_width + "  " + figures)
        else:
            out.append(row[0].ljust(name_width) + "  " + figures)
    return out


def _label(model: ModelEstimate) -> str:
    return f"{model.provider}/{model.model or '(no model)'}"


def _n(count: int) -> str:
    return f"{count:,}"


def _usd(amount: Decimal | None) -> str:
    from batchrunner.policy.pricing import format_usd

    return "" if amount is None else format_usd(amount)


def _cost(expected: Decimal | None, most: Decimal | None, priced: bool) -> str:
    if not priced:
        return "unknown"
    if expected is None:
        return "n/a (no batch API)"
    return f"{_usd(expected)} ({_usd(most)})"


def _time(seconds: float | None, bound: str | None) -> str:
    if seconds is None:
        return "not bounded by any limit we know (set --rpm/--tpm)"
    if bound == "batch window":
        return "up to 24 h (the provider's batch window)"
    return f"about {_duration(seconds)} (set by {bound})"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def estimate_json(estimate: Estimate) -> str:
    """Stable keys; USD as strings (exact decimals), ``null`` where unknown."""

    def usd(amount: Decimal | None) -> str | None:
        return None if amount is None else format(amount.normalize(), "f")

    return json.dumps(
        {
            "mode": estimate.mode,
            "jobs": estimate.jobs,
            "input_tokens": estimate.input_tokens,
            "max_output_tokens": estimate.max_output_tokens,
            "expected_output_tokens": estimate.expected_output_tokens,
            "cost_expected_usd": usd(estimate.total("expected")),
            "cost_max_usd": usd(estimate.total("max")),
            "unpriced_models": list(estimate.unpriced),
            "seconds": estimate.seconds,
            "models": [
                {
                    "provider": m.provider,
                    "model": m.model,
                    "jobs": m.jobs,
                    "input_tokens": m.input_tokens,
                    "max_output_tokens": m.max_output_tokens,
                    "expected_output_tokens": m.expected_output_tokens,
                    "expected_output_from": "answers" if m.output_from_answers else "default share",
                    "in_batch": m.in_batch,
                    "list_cost_expected_usd": usd(m.list_cost_expected),
                    "list_cost_max_usd": usd(m.list_cost_max),
                    "batch_cost_expected_usd": usd(m.batch_cost_expected),
                    "batch_cost_max_usd": usd(m.batch_cost_max),
                }
                for m in estimate.models
            ],
            "times": [
                {"provider": t.provider, "jobs": t.jobs, "seconds": t.seconds, "bound": t.bound}
                for t in estimate.times
            ],
        },
        indent=2,
    )
