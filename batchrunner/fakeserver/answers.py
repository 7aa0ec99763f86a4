"""Deterministic answers: the same prompt key always gets the same text, token counts and vectors.

- Text: ``3 + h % 30`` words (a hash ``h`` of the prompt key) drawn from a fixed vocabulary, cut to the
  request's output cap; one word is one output token, so ``output_tokens <= max_tokens`` always holds and an
  answer that was cut ends with ``finish_reason="length"`` (``stop_reason="max_tokens"``).
- Cached input tokens mirror OpenAI's prompt caching without keeping state: 0 below 1024 input tokens, else
  half the input rounded down to a multiple of 128.
- Embeddings: unit-length vectors from a hash of each input text.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass

VOCABULARY = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "amber",
    "azure",
    "beige",
    "coral",
    "ivory",
    "jade",
    "khaki",
    "lemon",
    "maroon",
    "ochre",
    "olive",
    "peach",
    "plum",
    "ruby",
    "sage",
    "sand",
    "silver",
    "slate",
    "teal",
    "umber",
    "violet",
    "wheat",
    "apple",
    "basil",
    "cedar",
    "daisy",
    "elm",
    "fern",
    "grape",
    "hazel",
    "iris",
    "juniper",
    "kale",
    "lotus",
    "maple",
    "nutmeg",
    "oak",
    "pine",
)
_MIN_WORDS = 3
_SPREAD_WORDS = 30


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """The deterministic answer to one prompt."""

    text: str
    words: tuple[str, ...]
    output_tokens: int
    truncated: bool
    """True when the output cap cut the answer short."""
    cached_tokens: int


def make_answer(key: str, *, max_tokens: int, input_tokens: int) -> Answer:
    """The answer to prompt ``key`` with at most ``max_tokens`` output tokens."""
    digest = hashlib.blake2b(key.encode(), digest_size=64).digest()
    natural = _MIN_WORDS + digest[0] % _SPREAD_WORDS
    count = min(natural, max_tokens)
    words = tuple(VOCABULARY[byte % len(VOCABULARY)] for byte in digest[1 : 1 + count])
    return Answer(
        text=" ".join(words),
        words=words,
        output_tokens=count,
        truncated=count < natural,
        cached_tokens=cached_tokens(input_tokens),
    )


def cached_tokens(input_tokens: int) -> int:
    """Input tokens reported as read from the prompt cache (deterministic, stateless)."""
    return 0 if input_tokens < 1024 else (input_tokens // 2) // 128 * 128


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector of ``dimensions`` floats derived from ``text``."""
    raw = bytearray()
    block = 0
    while len(raw) < 2 * dimensions:
        raw += hashlib.blake2b(text.encode(), digest_size=64, salt=block.to_bytes(16, "big")).digest()
        block += 1
    values = [v / 32767.5 - 1.0 for v in struct.unpack(f">{dimensions}H", bytes(raw[: 2 * dimensions]))]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embedding_base64(vector: list[float]) -> str:
    """The ``encoding_format="base64"`` form: little-endian float32s, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
