"""A fake OpenAI + Anthropic HTTP server: deterministic answers, real rate limits, scripted faults, books.

Tests, benchmarks and users rehearsing a big run point the real SDKs at it::

    batchrunner fake-server --port 0 --rpm 600 --p429 0.05      # prints "listening on http://127.0.0.1:PORT"
    python -m batchrunner.fakeserver --port 0 ...                # the same, without the main CLI

    async with await start_server(FakeServerConfig(latency_ms=5)) as server:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)

Routes (127.0.0.1 only): OpenAI ``POST /v1/chat/completions`` (``stream`` too, with
``stream_options.include_usage``), ``/v1/embeddings``, ``/v1/responses`` (``stream`` too); Anthropic
``POST /v1/messages`` (``stream`` too); ``GET /stats`` (``?prompts=0`` leaves out the per-prompt maps);
``POST /reset``. Any other ``/v1/...`` path answers an OpenAI-shaped 404.

**Batch APIs** (docs/batch-wire.md): OpenAI ``/v1/files`` and ``/v1/batches`` (:mod:`.openai_batches`),
Anthropic ``/v1/messages/batches`` (:mod:`.anthropic_batches`). Each line is answered as the realtime route
would answer it; a batch runs over ``batch_seconds`` (``--batch-seconds``), may expire part done
(``--batch-expire-fraction``), fail validation (``[[batch:invalid]]`` in a prompt) or be cancelled; the batch
routes' own requests meet ``--batch-api-faults``. Their books are the ``batch_*`` fields below, apart from
the realtime counters.

**API key**: OpenAI routes read ``Authorization: Bearer KEY``, Anthropic ``x-api-key`` (or a bearer token).
Any non-empty key passes unless ``api_key`` is set, then only that one; otherwise 401 in the provider's shape.

**Prompt key** (see :mod:`.prompts`): the text of the last ``user`` message (chat, messages), the ``input``
string or last user item (responses), the input texts joined by newlines (embeddings). It keys the books and
the fault schedule, and the answer is derived from it (:mod:`.answers`): the same prompt always gets the same
text and usage. The *attempt number* of a request is how many requests with its prompt key the server has
received since it started (or since ``POST /reset``), this one included, on any route and whatever their
outcome: give each test prompt its own text.

**Faults** (:class:`FaultKind`): by probability per request (``fault_rates`` / ``--p429 0.1``...), and by a
deterministic schedule per prompt and attempt (:mod:`.faults`): a ``[[fault:500,500]]`` directive inside the
prompt text (attempts 1 and 2 get a 500, attempt 3 succeeds; ``[[fault:*400]]``: always), or a
``--schedule FILE`` JSON object ``{"prompt key": ["500", "500"]}``. A scheduled fault skips the limiter.
With a ``seed``, random faults and jitter are a function of (seed, prompt key, attempt), so a run killed and
restarted against the same server meets the same faults.

**Limits**: ``rpm`` / ``tpm`` over a sliding ``window_s`` window (:mod:`.limits`), 429 with ``retry-after``,
``retry-after-ms`` and ``x-ratelimit-*`` / ``anthropic-ratelimit-*`` headers (also sent on successes).

**Books** (``GET /stats``)::

    {"requests": 12,                # requests received on the API routes
     "in_flight": 0, "peak_concurrency": 4,
     "by_route": {"/v1/chat/completions": 12},
     "by_status": {"200": 9, "500": 2, "429": 1},   # responses sent (not resets, hangs, truncations)
     "by_fault": {"500": 2, "reset": 1},            # injected faults (limiter refusals are not faults)
     "limit_violations": 1,         # requests the limiter refused
     "disconnects": 1,              # clients that gave up before the server answered
     "prompts": 5,                  # distinct prompt keys seen
     "answers_total": 9,            # complete answers sent (a no-usage answer counts; bad-json/html don't)
     "duplicates": 4,               # sum over prompt keys of (answers - 1)
     "tokens": {"input": 120, "output": 80, "cached": 0},   # over the answers
     "attempts": {"prompt text": 3, ...},    # requests per prompt key
     "answers": {"prompt text": 1, ...},     # complete answers per prompt key
     "batch_requests": 7, "batch_by_status": {"200": 7},   # requests to the batch routes
     "batch_files": 1,              # files uploaded
     "batches": {"openai": 1, "anthropic": 1}, "batches_failed": 0,
     "batch_lines": 6,              # lines in created batches that run
     "batch_line_duplicates": 0,    # lines whose prompt key was in an earlier batch
     "batch_answers": 5, "batch_errors": 1,    # lines answered (counted when a batch ends)
     "batch_tokens": {"input": 60, "output": 40},
     "batch_placements": {"prompt text": 1, ...}}   # batch lines per prompt key
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrunner.fakeserver.app import create_app
    from batchrunner.fakeserver.config import FakeServerConfig
    from batchrunner.fakeserver.faults import FaultKind, FaultPlan, load_schedule, parse_plan
    from batchrunner.fakeserver.server import FakeServer, serve_until_signalled, start_server

_HOMES = {
    "create_app": "batchrunner.fakeserver.app",
    "FakeServerConfig": "batchrunner.fakeserver.config",
    **{
        name: "batchrunner.fakeserver.faults"
        for name in ("FaultKind", "FaultPlan", "load_schedule", "parse_plan")
    },
    **{
        name: "batchrunner.fakeserver.server"
        for name in ("FakeServer", "serve_until_signalled", "start_server")
    },
}
"""Where each name lives; imported on first use, so that the fake server's command line (and so
``batchrunner --help``) does not import aiohttp."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchrunner.fakeserver' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "FakeServer",
    "FakeServerConfig",
    "FaultKind",
    "FaultPlan",
    "create_app",
    "load_schedule",
    "parse_plan",
    "serve_until_signalled",
    "start_server",
]
