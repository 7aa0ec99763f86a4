"""Read a request body into a :class:`Call`: its prompt key, token estimate and output cap.

The **prompt key** names "the same prompt" in the books and the fault schedule:

- ``/v1/chat/completions`` and ``/v1/messages``: the text of the last message whose role is ``user`` (text
  parts of a content list joined with a newline); if there is none, the text of the last message;
- ``/v1/responses``: ``input`` when it is a string, else the text of its last ``user`` item (as above);
- ``/v1/embeddings``: ``input`` when it is a string, else its items joined with a newline (token-id arrays as
  their JSON text).

Input tokens are estimated as ``ceil(chars / 4)`` (at least 1) over all the text the model would read: every
message (system included), Anthropic's ``system``, the Responses ``instructions``, or the embeddings input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Api(StrEnum):
    """The routes the server answers; the value is the URL path."""

    CHAT = "/v1/chat/completions"
    EMBEDDINGS = "/v1/embeddings"
    RESPONSES = "/v1/responses"
    MESSAGES = "/v1/messages"

    @property
    def is_anthropic(self) -> bool:
        return self is Api.MESSAGES


class BadRequest(Exception):
    """The request body is not something the API accepts (answered 400 in the provider's shape)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    """What the server needs to know about one request."""

    api: Api
    body: dict[str, Any]
    model: str
    key: str
    input_tokens: int
    max_tokens: int
    """The cap on output tokens (the request's, or the server default); 0 for embeddings."""
    stream: bool = False
    include_usage: bool = False
    """OpenAI chat streaming: ``stream_options.include_usage``."""
    inputs: tuple[str, ...] = ()
    """Embeddings: one text per vector."""


def estimate_tokens(chars: int) -> int:
    """``ceil(chars / 4)``, at least 1."""
    return max(1, (chars + 3) // 4)


def parse_call(api: Api, body: Any, *, default_max_tokens: int) -> Call:
    """Validate the parts of ``body`` the server uses; raise :class:`BadRequest` like the real API would."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    if api is Api.EMBEDDINGS:
        return _embeddings_call(body, model)
    if api is Api.RESPONSES:
        return _responses_call(body, model, default_max_tokens)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages: must be a non-empty array of message objects", "messages")
    chars = sum(len(_text(m.get("content"))) for m in messages)
    if api is Api.MESSAGES:
        chars += len(_text(body.get("system")))
        max_tokens = _max_tokens(body, "max_tokens", None)
    else:
        field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        max_tokens = _max_tokens(body, field, default_max_tokens)
    options = body.get("stream_options")
    return Call(
        api=api,
        body=body,
        model=model,
        key=_last_user_text(messages),
        input_tokens=estimate_tokens(chars),
        max_tokens=max_tokens,
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def _embeddings_call(body: dict[str, Any], model: str) -> Call:
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        inputs = tuple(raw)
    elif isinstance(raw, list) and raw and all(isinstance(item, int | list) for item in raw):
        inputs = (json.dumps(raw),) if isinstance(raw[0], int) else tuple(json.dumps(item) for item in raw)
    else:
        raise BadRequest("input: must be a string, an array of strings or an array of token ids", "input")
    return Call(
        api=Api.EMBEDDINGS,
        body=body,
        model=model,
        key="\n".join(inputs),
        input_tokens=estimate_tokens(sum(len(text) for text in inputs)),
        max_tokens=0,
        inputs=inputs,
    )


def _responses_call(body: dict[str, Any], model: str, default_max_tokens: int) -> Call:
    raw = body.get("input")
    if isinstance(raw, str) and raw:
        key, chars = raw, len(raw)
    elif isinstance(raw, list) and raw and all(isinstance(item, dict) for item in raw):
        key = _last_user_text(raw)
        chars = sum(len(_text(item.get("content"))) for item in raw)
    else:
        raise BadRequest("input: must be a non-empty string or array of input items", "input")
    chars += len(_text(body.get("instructions")))
    return Call(
        api=Api.RESPONSES,
        body=body,
        model=model,
        key=key,
        input_tokens=estimate_tokens(chars),
        max_tokens=_max_tokens(body, "max_output_tokens", default_max_tokens),
        stream=body.get("stream") is True,
    )


def _max_tokens(body: dict[str, Any], field: str, default: int | None) -> int:
    value = body.get(field)
    if value is None:
        if default is None:
            raise BadRequest(f"{field}: Field required", field)
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"{field}: must be an integer >= 1", field)
    return value


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return _text(messages[-1].get("content"))


def _text(content: Any) -> str:
    """The text of a message content: a string, or the ``text`` of each part of a list, newline-joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
