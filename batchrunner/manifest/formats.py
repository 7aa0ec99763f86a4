"""The line formats of docs/design.md "Manifest formats": detect a line's format, make it a :class:`JobSpec`.

* OpenAI Batch API: ``{"custom_id", "method": "POST", "url", "body"}``; the body is sent as it is.
* Anthropic Message Batches: ``{"custom_id", "params"}``; ``params`` is the ``/v1/messages`` body.
* Simple: ``{"id"?, "prompt" | "messages", "model"?, "system"?, "max_tokens"?, "temperature"?,
  "stream"?, "provider"?, "metadata"?}``; the body is built for the provider that serves the line
  (``"stream": true`` is kept in it; false or null is left out, as if absent).

The format is told by the keys present: any of ``method``/``url``/``body`` makes an OpenAI Batch line,
``params`` an Anthropic line, anything else a simple line (whose unknown keys are then errors).
"""

from __future__ import annotations

from typing import Any

from batchrunner.manifest.checks import (
    ANTHROPIC_LINE,
    BODIES,
    BODY_ANY_URL,
    OPENAI_LINE,
    OPENAI_URLS,
    SIMPLE_LINE,
    anthropic_messages,
    check_fields,
)
from batchrunner.manifest.options import ManifestOptions, provider_problem, served_by
from batchrunner.manifest.strictjson import Problem, encode_compact, has_surrogates, locate
from batchrunner.models import Endpoint, JobSpec, ManifestFormat
from batchrunner.policy.tokens import estimate_output_tokens, estimate_prompt_tokens

SIMPLE_MAX_TOKENS = 1024
"""``max_tokens`` of a simple line sent to Anthropic without one (Anthropic requires it)."""
FAKE_MODEL = "fake-model"
"""The model of a simple line for the ``fake`` provider when neither the line nor ``--model`` names one."""


_SIMPLE = ManifestFormat.SIMPLE  # enum member lookups cost ~50 ns each; these run per line
_OPENAI_BATCH = ManifestFormat.OPENAI_BATCH
_ANTHROPIC_BATCH = ManifestFormat.ANTHROPIC_BATCH
_CHAT = Endpoint.CHAT_COMPLETIONS
_MESSAGES = Endpoint.MESSAGES
_ENDPOINT_BY_URL = {endpoint.value: endpoint for endpoint in Endpoint}  # Endpoint(url) costs 250 ns
_MESSAGES_BODY = BODIES[_MESSAGES]


def build_job(obj: dict[str, Any], line_number: int, options: ManifestOptions) -> JobSpec | list[Problem]:
    """Detect the format of one parsed line and validate it into a job, or list everything wrong with it."""
    is_openai = "body" in obj or "url" in obj or "method" in obj
    if "params" in obj:
        if is_openai:
            return [("line", "mixes OpenAI Batch fields (method, url, body) with Anthropic's params")]
        return _anthropic_line(obj, line_number, options)
    if is_openai:
        return _openai_line(obj, line_number, options)
    return _simple_line(obj, line_number, options)


def _openai_line(obj: dict[str, Any], line_number: int, options: ManifestOptions) -> JobSpec | list[Problem]:
    problems = check_fields(obj, OPENAI_LINE)
    body, url = obj.get("body"), obj.get("url")
    if type(body) is dict:
        problems += check_fields(body, BODIES[url] if url in OPENAI_URLS else BODY_ANY_URL, "body.")
    if problems:
        return problems
    provider = options.default_provider or "openai"
    return _job(obj, line_number, _OPENAI_BATCH, _ENDPOINT_BY_URL[obj["url"]], obj["body"], provider, options)


def _anthropic_line(
    obj: dict[str, Any], line_number: int, options: ManifestOptions
) -> JobSpec | list[Problem]:
    problems = check_fields(obj, ANTHROPIC_LINE)
    params = obj.get("params")
    if type(params) is dict:
        problems += check_fields(params, _MESSAGES_BODY, "params.")
    if problems:
        return problems
    provider = options.default_provider or "anthropic"
    return _job(obj, line_number, _ANTHROPIC_BATCH, _MESSAGES, obj["params"], provider, options)


def _simple_line(obj: dict[str, Any], line_number: int, options: ManifestOptions) -> JobSpec | list[Problem]:
    """A simple line: provider = its own, else ``--provider``, else openai (the format has no default);
    model = its own, else ``--model``, else ``fake-model`` for the fake provider, else an issue."""
    problems = check_fields(obj, SIMPLE_LINE)
    if ("prompt" in obj) == ("messages" in obj):
        problems.append(("prompt", "a simple line needs exactly one of prompt and messages"))
    provider = obj.get("provider") or options.default_provider or "openai"
    model: str | None = (
        obj.get("model") or options.default_model or (FAKE_MODEL if provider == "fake" else None)
    )
    if model is None:
        problems.append(("model", 'missing: set "model" on the line or pass --model'))
    if not problems and provider == "anthropic" and "messages" in obj:
        bad = anthropic_messages(obj["messages"])
        if bad is not None:
            problems.append(("messages" + bad[0], bad[1]))
    if problems or model is None:
        return problems
    endpoint = _MESSAGES if provider == "anthropic" else _CHAT
    return _job(obj, line_number, _SIMPLE, endpoint, _simple_body(obj, model, endpoint), provider, options)


def _simple_body(obj: dict[str, Any], model: str, endpoint: Endpoint) -> dict[str, Any]:
    """The request body of a valid simple line, in the shape of ``endpoint``.

    An empty ``system`` is left out, as if absent.
    """
    messages = obj["messages"] if "messages" in obj else [{"role": "user", "content": obj["prompt"]}]
    system = obj.get("system")
    body: dict[str, Any]
    if endpoint is _MESSAGES:
        body = {"model": model, "max_tokens": obj.get("max_tokens", SIMPLE_MAX_TOKENS), "messages": messages}
        if system:
            body["system"] = system
    else:
        if system:
            messages = [{"role": "system", "content": system}, *messages]
        body = {"model": model, "messages": messages}
        if "max_tokens" in obj:
            body["max_tokens"] = obj["max_tokens"]
    if "temperature" in obj:
        body["temperature"] = obj["temperature"]
    if obj.get("stream") is True:
        body["stream"] = True
    return body


def _origin(obj: dict[str, Any], fmt: ManifestFormat, options: ManifestOptions) -> str:
    """Where a line's provider came from, for messages (the order of docs/design.md "Manifest formats")."""
    if fmt is _SIMPLE and "provider" in obj:
        return "the line's provider"
    if options.default_provider is not None:
        return "from --provider"
    return "the default for this line format" if fmt is not _SIMPLE else "the default provider"


def _job(
    obj: dict[str, Any],
    line_number: int,
    fmt: ManifestFormat,
    endpoint: Endpoint,
    body: dict[str, Any],
    provider: str,
    options: ManifestOptions,
) -> JobSpec | list[Problem]:
    """Check the provider can serve the line, serialise body and metadata once, and build the job."""
    if provider not in options.known_providers or endpoint not in served_by(provider, options):
        return [provider_problem(provider, endpoint, _origin(obj, fmt, options), options)]
    custom_id: str = obj.get("custom_id") or obj.get("id") or f"line-{line_number}"
    metadata = obj.get("metadata")
    try:
        request_json = encode_compact(body)
        metadata_json = None if metadata is None else encode_compact(metadata)
    except ValueError:  # a number such as 1e999 overflowed to infinity
        path = locate(obj, lambda node: isinstance(node, float) and node in (_INF, -_INF))
        return [(path, "is too large for a number (it would be Infinity, which is not valid JSON)")]
    if _has_lone_surrogates(request_json, custom_id, metadata_json):
        path = locate(obj, lambda node: isinstance(node, str) and has_surrogates(node))
        return [(path, "contains a lone surrogate escape (such as \\ud800), which is not valid Unicode text")]
    return JobSpec(
        custom_id=custom_id,
        line_number=line_number,
        format=fmt,
        provider=provider,
        endpoint=endpoint,
        model=body["model"],
        request_json=request_json,
        metadata_json=metadata_json,
        prompt_tokens=estimate_prompt_tokens(endpoint, body),
        output_tokens=estimate_output_tokens(endpoint, body),
    )


_INF = float("inf")


def _has_lone_surrogates(request_json: str, custom_id: str, metadata_json: str | None) -> bool:
    """True if any of the texts has a lone surrogate (from a ``\\ud800`` escape): SQLite cannot store it.

    ASCII text (most lines; ``str.isascii`` is O(1)) cannot; other text is checked by encoding it.
    """
    if request_json.isascii() and custom_id.isascii() and (metadata_json is None or metadata_json.isascii()):
        return False
    return any(has_surrogates(text) for text in (request_json, custom_id, metadata_json or ""))
