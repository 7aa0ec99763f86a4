"""``batchrunner fake-server`` (and ``python -m batchrunner.fakeserver``): parse the flags into a
FakeServerConfig, serve until SIGINT/SIGTERM.

The fake server is self-contained (it imports nothing else of batchrunner), so its command line lives
with it; the main CLI registers this command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchrunner.fakeserver.config import FakeServerConfig
from batchrunner.fakeserver.faults import FaultKind, load_schedule, parse_plan

if TYPE_CHECKING:
    from batchrunner.fakeserver.server import FakeServer

EPILOG = """\
Fault kinds (each has a --pKIND probability flag; they must sum to at most 1):
429 429-date 400 401 403 404 408 409 422 500 502 503 504 529 reset hang truncate
bad-json html no-usage quota credit.

Deterministic faults by prompt and attempt number (the Nth request the server sees with the same prompt key,
counted since start or POST /reset):

\b
  in the prompt text:  [[fault:500,500]]   attempts 1-2 get 500, attempt 3+ succeeds
                       [[fault:*400]]      every attempt gets 400
                       [[fault:429,*500]]  429, then 500 forever;  "ok" = no fault
  --schedule FILE:     {"prompt key": ["500", "500"], "other prompt": ["*reset"]}

The prompt key is the text of the last user message (chat, messages), the input string or last user item
(responses), or the input texts joined by newlines (embeddings). GET /stats returns the books (requests,
statuses, faults, answers and attempts per prompt, duplicates, peak concurrency, limit violations, tokens);
POST /reset clears them.

Provider batches (POST /v1/files + /v1/batches, POST /v1/messages/batches): each line is answered as the
realtime route would answer it; a prompt's [[fault:400]] fails its line, [[batch:invalid]] fails the whole
batch's validation. Their books are the batch_* fields of GET /stats.
"""


def _param(kind: FaultKind) -> str:
    return "p" + kind.value.replace("-", "_")


def _fault_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One ``--pKIND`` probability option per fault kind, documented from the kind's docstring."""
    for kind in reversed(FaultKind):
        help_text = f"Probability of: {kind.description}"
        command = click.option(
            f"--p{kind.value}",
            _param(kind),
            type=click.FloatRange(0.0, 1.0),
            default=0.0,
            metavar="P",
            help=help_text,
        )(command)
    return command


@click.command("fake-server", epilog=EPILOG)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="TCP port on 127.0.0.1; 0 picks a free one. The first stdout line is "
    "'listening on http://127.0.0.1:PORT'.",
)
@click.option("--api-key", default=None, help="Accept only this key (default: any non-empty key).")
@click.option(
    "--latency-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Delay before every answer or injected fault.",
)
@click.option(
    "--jitter-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Extra delay, uniform in [0, jitter].",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Make random faults and jitter a function of (seed, prompt, attempt).",
)
@click.option(
    "--schedule",
    "schedule_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON file: prompt key -> list of faults by attempt.",
)
@click.option(
    "--retry-after-s",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Retry-After announced by injected 429s.",
)
@click.option(
    "--max-hang-s",
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    help="A hang resets the connection after this long.",
)
@click.option("--rpm", type=click.IntRange(1), default=None, help="Requests per minute (default: no limit).")
@click.option(
    "--tpm",
    type=click.IntRange(1),
    default=None,
    help="Tokens per minute, input estimate + max_tokens (default: no limit).",
)
@click.option(
    "--window-s",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Sliding window of the limits: at most rpm*window/60 requests in any window.",
)
@click.option(
    "--embedding-dim",
    type=click.IntRange(1, 65536),
    default=8,
    show_default=True,
    help="Length of embedding vectors.",
)
@click.option(
    "--default-max-tokens",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Output cap and TPM charge for OpenAI requests without max_tokens.",
)
@click.option(
    "--event-gap-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Pause between two events of a streamed answer.",
)
@click.option(
    "--cut-after-events",
    type=click.IntRange(0),
    default=None,
    help="The truncate fault cuts a stream after N events (default: half of them).",
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="How long a provider batch (OpenAI Batch API, Anthropic Message Batches) takes; its lines "
    "complete evenly over this time.",
)
@click.option(
    "--batch-expire-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    metavar="F",
    help="Every batch expires once this fraction of its lines is done; the rest are expired lines "
    "(default: batches never expire).",
)
@click.option(
    "--batch-api-faults",
    default=None,
    metavar="PLAN",
    help="Faults for the batch API's own requests (files, batches) by their number, e.g. '429,ok,500'.",
)
@_fault_options
def fake_server(schedule_file: Path | None, batch_api_faults: str | None, **options: Any) -> None:
    """Serve fake OpenAI and Anthropic APIs on 127.0.0.1 until SIGINT or SIGTERM.

    Deterministic answers and usage, RPM/TPM limits with real rate-limit headers, injected faults, and books
    at GET /stats. Point the SDKs at http://127.0.0.1:PORT/v1 (OpenAI) or http://127.0.0.1:PORT (Anthropic).
    """
    rates = {kind: options.pop(_param(kind)) for kind in FaultKind}
    try:
        schedule = load_schedule(schedule_file) if schedule_file is not None else {}
        config = FakeServerConfig(
            fault_rates={k: p for k, p in rates.items() if p},
            schedule=schedule,
            batch_api_faults=parse_plan(batch_api_faults) if batch_api_faults else None,
            **options,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def ready(server: FakeServer) -> None:
        click.echo(f"listening on {server.base_url}")  # click.echo flushes: a parent may be waiting for it

    try:
        from batchrunner.fakeserver.server import serve_until_signalled  # aiohttp: only when serving

        asyncio.run(serve_until_signalled(config, ready))
    except OSError as exc:
        raise click.ClickException(f"cannot serve on 127.0.0.1:{config.port}: {exc}") from None
