"""Table-driven field checks for manifest lines.

A :class:`Schema` maps each field a JSON object may have to a small check function; :func:`check_fields`
runs the table over one object and collects every problem, so a bad line is reported in full.

Why not pydantic (STYLE.md habit 14 names it for untrusted input)? Measured on the benchmark's 200k
mixed, already-parsed lines (``python benchmarks/bench_manifest_parse.py --pydantic``, 2-core VM):

=========================================================  ===========
these checks                                                1.0 us/line
pydantic ``TypeAdapter`` over ``TypedDict`` s, same rules   1.2 us/line
pydantic ``BaseModel.model_validate``, same rules           2.1 us/line
=========================================================  ===========

Against ``TypeAdapter`` speed is a wash; the table wins on what users read. It says ``field: reason`` in
the manifest's own terms, with hints, where pydantic reports a union as one error per member
(``input.str: Input should be a valid string``, ``input.list[any]: Input should be a valid list``) and
would need a translation layer; and the rules that depend on other fields (the body by url, exactly one
of prompt and messages, roles by provider) need code either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchrunner.manifest.strictjson import Problem, kind, show, show_key

Bad = tuple[str, str]
"""What a check returns for a bad value: ``(sub-path, reason)``; the sub-path is ``""`` or ``".0.role"``."""
Check = Callable[[Any], Bad | None]
"""A field check: ``None`` when the value is fine."""

MAX_ID_LENGTH = 512
"""The longest ``custom_id`` / ``id`` accepted."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Schema:
    """The fields one JSON object may have, which of them are required, and whether others are allowed."""

    fields: Mapping[str, Check]
    required: frozenset[str] = frozenset()
    closed: bool = True
    """Unknown fields are an error (manifest lines); request bodies are open (APIs grow new options)."""
    unknown: str = "unknown field"
    """The reason given for an unknown field, ideally listing the known ones."""


def check_fields(obj: dict[str, Any], schema: Schema, prefix: str = "") -> list[Problem]:
    """Every problem of ``obj`` against ``schema``; field paths start with ``prefix`` (``"body."``)."""
    problems: list[Problem] = []
    fields = schema.fields
    for key, value in obj.items():
        check = fields.get(key)
        if check is None:
            if schema.closed:
                problems.append((prefix + show_key(key), schema.unknown))
        else:
            bad = check(value)
            if bad is not None:
                problems.append((prefix + key + bad[0], bad[1]))
    if not schema.required <= obj.keys():
        problems.extend(
            (prefix + key, "missing (required)") for key in sorted(schema.required) if key not in obj
        )
    return problems


# --- checks -------------------------------------------------------------------------------------------


def text(value: Any) -> Bad | None:
    """A non-empty string."""
    if type(value) is str and value:
        return None
    return "", "must be a non-empty string" if type(value) is str else f"must be a string, not {kind(value)}"


def string(value: Any) -> Bad | None:
    """Any string."""
    return None if type(value) is str else ("", f"must be a string, not {kind(value)}")


def identifier(value: Any) -> Bad | None:
    """A job id: a non-empty string of at most :data:`MAX_ID_LENGTH` characters."""
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH:
        return None
    if type(value) is str:
        return "", f"must be 1 to {MAX_ID_LENGTH} characters long, not {len(value)}"
    return "", f"must be a string, not {kind(value)}"


def positive_int(value: Any) -> Bad | None:
    """An integer >= 1 (booleans are not integers here)."""
    if type(value) is int and value >= 1:
        return None
    return "", f"must be an integer >= 1, not {show(value) if type(value) is int else kind(value)}"


def temperature(value: Any) -> Bad | None:
    """A number from 0 to 2."""
    if type(value) in (int, float) and 0 <= value <= 2:
        return None
    return (
        "",
        f"must be a number from 0 to 2, not {show(value) if type(value) in (int, float) else kind(value)}",
    )


def json_object(value: Any) -> Bad | None:
    """A JSON object."""
    return None if type(value) is dict else ("", f"must be an object, not {kind(value)}")


def text_or_list(value: Any) -> Bad | None:
    """A string or a non-empty array (embeddings ``input``, responses ``input``, anthropic ``system``)."""
    if type(value) is str or (type(value) is list and value):
        return None
    return "", "must be a string or a non-empty array" + (
        "" if type(value) is list else f", not {kind(value)}"
    )


def stream_flag(value: Any) -> Bad | None:
    """``stream`` true, false or null: a stream is added up into the stored answer (docs/streaming.md)."""
    if value is None or type(value) is bool:
        return None
    return "", f"must be true or false, not {kind(value)}"


def not_streaming(value: Any) -> Bad | None:
    """``stream`` absent, false or null where batchrunner cannot add a stream up (embeddings, responses)."""
    if value is None or value is False:
        return None
    return "", (
        "streaming is supported for /v1/chat/completions and /v1/messages only; remove it or set it to false"
    )


def post(value: Any) -> Bad | None:
    """The OpenAI Batch API's only method."""
    return None if value == "POST" else ("", f'must be "POST", not {show(value)}')


def chat_messages(value: Any) -> Bad | None:
    """OpenAI chat messages: a non-empty array of objects with a ``role``; ``content`` text, parts or null."""
    if type(value) is not list or not value:
        return "", "must be a non-empty array of messages" + (
            "" if type(value) is list else f", not {kind(value)}"
        )
    for i, message in enumerate(value):
        if type(message) is not dict:
            return f".{i}", f"must be a message object, not {kind(message)}"
        if text(message.get("role")) is not None:
            return f".{i}.role", "must be a non-empty string"
        content = message.get("content")
        if not (content is None or type(content) is str or type(content) is list):
            return f".{i}.content", f"must be a string, an array of parts or null, not {kind(content)}"
    return None


def anthropic_messages(value: Any) -> Bad | None:
    """Anthropic messages: as for chat, but only ``user``/``assistant`` roles and ``content`` required."""
    bad = chat_messages(value)
    if bad is not None:
        return bad
    for i, message in enumerate(value):
        if message["role"] not in ("user", "assistant"):
            return f".{i}.role", (
                f'must be "user" or "assistant" for Anthropic, not {show(message["role"])} '
                '(a system prompt goes in "system")'
            )
        if message.get("content") is None:
            return f".{i}.content", "missing (Anthropic needs a string or an array of content blocks)"
    return None


# --- schemas -------------------------------------------------------------------------------------------

OPENAI_URLS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")


def openai_url(value: Any) -> Bad | None:
    """One of the OpenAI Batch API endpoints batchrunner serves."""
    if value in OPENAI_URLS and type(value) is str:
        return None
    return "", f"unknown url {show(value)}; expected one of {', '.join(OPENAI_URLS)}"


OPENAI_LINE = Schema(
    fields={"custom_id": identifier, "method": post, "url": openai_url, "body": json_object},
    required=frozenset(("custom_id", "method", "url", "body")),
    unknown="unknown field (an OpenAI Batch line has custom_id, method, url and body)",
)
ANTHROPIC_LINE = Schema(
    fields={"custom_id": identifier, "params": json_object},
    required=frozenset(("custom_id", "params")),
    unknown="unknown field (an Anthropic Message Batches line has custom_id and params)",
)
_COMMON_BODY: dict[str, Check] = {
    "model": text,
    "max_tokens": positive_int,
    "max_completion_tokens": positive_int,
    "max_output_tokens": positive_int,
    "temperature": temperature,
    "stream": not_streaming,
}
BODIES: dict[str, Schema] = {
    "/v1/chat/completions": Schema(
        fields={**_COMMON_BODY, "messages": chat_messages, "stream": stream_flag},
        required=frozenset(("model", "messages")),
        closed=False,
    ),
    "/v1/embeddings": Schema(
        fields={**_COMMON_BODY, "input": text_or_list}, required=frozenset(("model", "input")), closed=False
    ),
    "/v1/responses": Schema(
        fields={**_COMMON_BODY, "input": text_or_list}, required=frozenset(("model", "input")), closed=False
    ),
    "/v1/messages": Schema(
        fields={
            **_COMMON_BODY,
            "messages": anthropic_messages,
            "system": text_or_list,
            "stream": stream_flag,
        },
        required=frozenset(("model", "max_tokens", "messages")),
        closed=False,
    ),
}
"""The request body of each endpoint: required fields and the types of the common options."""
BODY_ANY_URL = Schema(fields={"model": text}, required=frozenset(("model",)), closed=False)
"""The body of an OpenAI Batch line whose url is unknown: at least the model is checked."""

SIMPLE_FIELDS = (
    "id",
    "prompt",
    "messages",
    "model",
    "system",
    "max_tokens",
    "temperature",
    "stream",
    "provider",
    "metadata",
)
SIMPLE_LINE = Schema(
    fields={
        "id": identifier,
        "prompt": text,
        "messages": chat_messages,
        "model": text,
        "system": string,
        "max_tokens": positive_int,
        "temperature": temperature,
        "stream": stream_flag,
        "provider": text,
        "metadata": json_object,
    },
    unknown=(
        f"unknown field; a simple line may have {', '.join(SIMPLE_FIELDS)} "
        "(an OpenAI Batch line has url and body, an Anthropic one params)"
    ),
)
