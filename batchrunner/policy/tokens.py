"""An offline estimate of the tokens one request will use, for the TPM reservation before the call.

The limiter (:mod:`batchrunner.policy.ratelimit`) reserves ``prompt + output`` tokens before a request is
sent, the way the providers charge their TPM limits (prompt estimate + ``max_tokens``), and settles
to the usage the provider reports afterwards. So this is an **estimate**, never a bill: it must be
cheap (it runs for every job), need no network and no tokenizer download, and rather err high than
low, since a low estimate is what gets a 429.

Prompt tokens: ``ceil(utf8_bytes / 4)`` over every string the model reads, plus
``PER_MESSAGE_TOKENS`` per message and ``PER_REQUEST_TOKENS`` per request. UTF-8 bytes rather than
characters because that is what BPE tokenizers split: it is the familiar "4 characters per token" for
English, and about 0.75 tokens per character for CJK text, where ``chars / 4`` would under-count
four-fold. Images, audio and files count ``MEDIA_TOKENS`` each (their base64 payload is not text);
the real figure depends on the size and detail, and settling corrects it.

What is read, per endpoint: chat completions ``messages`` (+ ``tools``, ``functions``,
``response_format``); Anthropic messages ``messages`` + ``system`` (+ ``tools``); responses ``input``
(a string or items) + ``instructions`` (+ ``tools``, ``text``); embeddings ``input`` (a string, a list
of strings, or token-id arrays, which count exactly). An unknown endpoint reads every string of the
body. Keys and numbers are not counted (except token ids), and a malformed body never raises: it is
estimated from what is there.

Output reservation: ``max_completion_tokens`` / ``max_tokens`` (chat, times ``n`` choices),
``max_tokens`` (Anthropic), ``max_output_tokens`` (responses), or ``DEFAULT_OUTPUT_TOKENS`` when the
request gives none; 0 for embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from batchrunner.models import Endpoint

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "MEDIA_TOKENS",
    "PER_MESSAGE_TOKENS",
    "PER_REQUEST_TOKENS",
    "TokenEstimate",
    "estimate_output_tokens",
    "estimate_prompt_tokens",
    "estimate_tokens",
]

BYTES_PER_TOKEN: Final = 4
PER_MESSAGE_TOKENS: Final = 4
"""Role and separators around each message (OpenAI's cookbook counts 3-4)."""
PER_REQUEST_TOKENS: Final = 3
"""The priming of the assistant's reply."""
MEDIA_TOKENS: Final = 1_000
"""One image, audio clip or file: between a low-detail image (85) and a large one (~1,600)."""
DEFAULT_OUTPUT_TOKENS: Final = 1_024
"""The output reserved when a chat/messages/responses request sets no cap (as the fake server does)."""

_MEDIA_TYPES: Final = frozenset(
    {"image", "image_url", "input_image", "input_audio", "audio", "file", "input_file", "document"}
)
_EXTRA_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    Endpoint.CHAT_COMPLETIONS: ("tools", "functions", "response_format"),
    Endpoint.MESSAGES: ("system", "tools"),
    Endpoint.RESPONSES: ("instructions", "tools", "text"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenEstimate:
    """Estimated prompt tokens and the output tokens to reserve, for one request."""

    prompt_tokens: int
    output_tokens: int

    @property
    def total(self) -> int:
        """What the limiter reserves before the call."""
        return self.prompt_tokens + self.output_tokens


def estimate_tokens(endpoint: Endpoint | str, body: Mapping[str, Any]) -> TokenEstimate:
    """The prompt estimate and output reservation of one request (see the module docstring)."""
    return TokenEstimate(
        prompt_tokens=estimate_prompt_tokens(endpoint, body),
        output_tokens=estimate_output_tokens(endpoint, body),
    )


def estimate_prompt_tokens(endpoint: Endpoint | str, body: Mapping[str, Any]) -> int:
    """Prompt tokens of a request body, estimated offline."""
    if endpoint == Endpoint.EMBEDDINGS:
        return _embedding_tokens(body.get("input"))
    extra = _EXTRA_FIELDS.get(endpoint)
    if extra is None:  # an endpoint we do not know: every string in the body
        return _to_tokens(*_measure(body)) + PER_REQUEST_TOKENS
    items = body.get("input") if endpoint == Endpoint.RESPONSES else body.get("messages")
    if isinstance(items, str):
        items = [items]
    messages = items if isinstance(items, list) else []
    size, media = _measure(messages)
    for field in extra:
        value = body.get(field)
        if value is not None:  # most requests have none of them: skip the walk
            more_size, more_media = _measure(value)
            size, media = size + more_size, media + more_media
    return _to_tokens(size, media) + PER_MESSAGE_TOKENS * len(messages) + PER_REQUEST_TOKENS


def estimate_output_tokens(endpoint: Endpoint | str, body: Mapping[str, Any]) -> int:
    """Output tokens to reserve: the request's cap, else ``DEFAULT_OUTPUT_TOKENS``; 0 for embeddings."""
    if endpoint == Endpoint.EMBEDDINGS:
        return 0
    if endpoint == Endpoint.RESPONSES:
        cap = _cap(body.get("max_output_tokens"))
    elif endpoint == Endpoint.MESSAGES:
        cap = _cap(body.get("max_tokens"))
    else:
        cap = _cap(body.get("max_completion_tokens"))
        if cap is None:
            cap = _cap(body.get("max_tokens"))
    choices = _cap(body.get("n")) if endpoint == Endpoint.CHAT_COMPLETIONS else None
    return (DEFAULT_OUTPUT_TOKENS if cap is None else cap) * max(1, choices or 1)


def _cap(value: object) -> int | None:
    """A non-negative integer field, or ``None`` when it is absent or not one (``True`` is not 1)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _to_tokens(size: int, media: int) -> int:
    return -(-size // BYTES_PER_TOKEN) + MEDIA_TOKENS * media


def _embedding_tokens(value: object) -> int:
    """Embeddings input: a string, strings, token ids (exact) or lists of token ids."""
    if isinstance(value, str):
        return _to_tokens(_utf8_size(value), 0)
    if not isinstance(value, list):
        return 0
    tokens = 0
    for item in value:
        if isinstance(item, str):
            tokens += _to_tokens(_utf8_size(item), 0)
        elif isinstance(item, list):
            tokens += len(item)
        elif isinstance(item, int):
            tokens += 1
    return tokens


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _measure(value: object) -> tuple[int, int]:
    """(UTF-8 bytes of every string value, number of media parts) in a JSON value, iteratively."""
    size = media = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:  # the common case first, without isinstance's subclass walk
            size += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, str):
            size += _utf8_size(item)
        elif isinstance(item, dict):
            if item.get("type") in _MEDIA_TYPES:
                media += 1
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return size, media
