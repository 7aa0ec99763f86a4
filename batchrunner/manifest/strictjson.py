"""Strict JSON for one manifest line: bytes in, a ``dict`` or a ``(field, reason)`` problem out.

docs/reliability.md rule 10 says manifest input is hostile. The standard library's decoder is lenient in ways
that matter here, so this module closes each gap at (almost) no cost on the fast path:

* **UTF-8 only**: the bytes are decoded explicitly (``json.loads(bytes)`` would also take UTF-16/32).
* **Duplicate keys** at any depth: an ``object_pairs_hook`` compares ``len(dict(pairs))`` with
  ``len(pairs)`` (about 0.2 us per object).
* **NaN / Infinity** literals: ``parse_constant`` raises. An overflowing number such as ``1e999`` parses as
  ``inf`` without passing through ``parse_constant``; the encoder (``allow_nan=False``) refuses it instead.
* **Nesting deeper than** :data:`MAX_DEPTH`: the tree is walked only when the line holds more than
  ``MAX_DEPTH`` brackets, which a normal line never does; the C scanner's ``RecursionError`` covers the
  absurd cases.
* **Lone surrogates** (``"\\ud800"``) decode to text that SQLite cannot store; the caller checks its
  output with :func:`has_surrogates`.

When a check fails, the line is decoded again leniently and walked to name the dotted path of the
offending value (``body.messages.0.content``); that slow path runs only for rejected lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

Problem = tuple[str, str]
"""``(field, reason)``: a dotted path such as ``body.model`` (``line`` for the whole line) and why."""

MAX_LINE_BYTES = 8 * 1024 * 1024
"""The longest line (without its line end) that is parsed at all."""
MAX_DEPTH = 64
"""The deepest nesting of objects and arrays a line may have (the line's own object is level 1)."""

_JSON_WHITESPACE = b" \t\r\n"
_JSON_WHITESPACE_STR = " \t\r\n"


class _Duplicate(ValueError):
    """Raised by the strict hook: an object has the same key twice."""


class _NonFinite(ValueError):
    """Raised by the strict hook: a NaN, Infinity or -Infinity literal."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_reject_constant)


class _Duplicated(dict[str, Any]):
    """What the lenient re-decode builds for an object with a duplicate key (to find its path)."""

    duplicate = ""


def _mark_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    marked = _Duplicated(result)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.duplicate = key
            break
        seen.add(key)
    return marked


_LENIENT = json.JSONDecoder(object_pairs_hook=_mark_duplicates, parse_constant=float)


def decode_object(raw: bytes) -> dict[str, Any] | Problem:
    """Decode one line (line end included or not) into a JSON object, or say why it is rejected.

    The length limit applies to the line without its surrounding whitespace (and line end).
    """
    line = raw.strip(_JSON_WHITESPACE)
    if len(line) > MAX_LINE_BYTES:
        return "line", f"longer than {MAX_LINE_BYTES} bytes; not parsed"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "line", f"not valid UTF-8: byte 0x{line[exc.start]:02x} at byte {_lead(raw) + exc.start + 1}"
    try:
        obj, end = _STRICT.raw_decode(text)
    except (_Duplicate, _NonFinite):
        return _locate_rejected(text, _lead(raw))
    except (ValueError, RecursionError) as exc:
        return _syntax_problem(exc, _lead(raw))
    if end != len(text):
        extra_at = len(text) - len(text[end:].lstrip(_JSON_WHITESPACE_STR))
        return "line", f"invalid JSON: extra data after the object (column {_lead(raw) + extra_at + 1})"
    if type(obj) is not dict:
        return "line", f"must be a JSON object, not {kind(obj)}"
    brackets = len(line) - len(line.translate(None, b"{["))  # 0.18 us; two bytes.count() take 0.28
    if brackets > MAX_DEPTH and depth(obj) > MAX_DEPTH:
        return "line", f"nested deeper than {MAX_DEPTH} levels"
    return obj


def _lead(raw: bytes) -> int:
    """How many whitespace bytes precede the JSON text (to report columns in the line as written)."""
    return len(raw) - len(raw.lstrip(_JSON_WHITESPACE))


def _syntax_problem(exc: ValueError | RecursionError, lead: int) -> Problem:
    """What a decoder exception means for the user; ``lead`` is the whitespace before the JSON text."""
    if isinstance(exc, json.JSONDecodeError):
        return "line", f"invalid JSON: {exc.msg} (column {lead + exc.colno})"
    if isinstance(exc, RecursionError):
        return "line", f"nested deeper than {MAX_DEPTH} levels"
    return "line", "invalid JSON: a number has too many digits"  # int() refuses > 4300 digits


def _locate_rejected(text: str, lead: int) -> Problem:
    """Decode leniently and name the first duplicate key or non-finite number (slow path).

    The strict decoder stops at the first such value, so the rest of the line may still be broken.
    """
    try:
        obj, _ = _LENIENT.raw_decode(text)
    except (ValueError, RecursionError) as exc:
        return _syntax_problem(exc, lead)
    for path, node in walk(obj):
        if isinstance(node, _Duplicated):
            return join(path, node.duplicate), "duplicate key (the same object has it twice)"
        if isinstance(node, float) and not math.isfinite(node):
            return (
                path,
                f"{_NON_FINITE_NAMES[str(node)]} is not valid JSON (NaN and Infinity are not allowed)",
            )
    raise AssertionError("a strict-decode rejection that the lenient decode cannot find")  # pragma: no cover


_NON_FINITE_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def locate(obj: object, predicate: Callable[[object], bool]) -> str:
    """The dotted path of the first value (or key) in ``obj`` for which ``predicate`` holds."""
    return next((path for path, node in walk(obj) if predicate(node)), "line")


def walk(obj: object, path: str = "line") -> Iterator[tuple[str, object]]:
    """Every value in document order with its dotted path; an object's keys come with their value's path.

    The top level is ``line``; below it paths drop that prefix (``body.messages.0``).
    """
    stack: list[tuple[str, object]] = [(path, obj)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if isinstance(node, dict):
            children = [(join(path, key), key, value) for key, value in node.items()]
            for child_path, key, _ in children:
                yield child_path, key
            stack.extend((child_path, value) for child_path, _, value in reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{path}.{i}", value) for i, value in enumerate(node)]))


def join(path: str, key: str) -> str:
    """``join("line", "body") == "body"``; ``join("body", "model") == "body.model"`` (keys as shown)."""
    return show_key(key) if path == "line" else f"{path}.{show_key(key)}"


def show_key(key: str) -> str:
    """A key as it may appear in a field path: itself if short and plain, else quoted by :func:`show`."""
    return key if len(key) <= 64 and key.isidentifier() else show(key)


def show(value: object, limit: int = 64) -> str:
    """A value from the manifest quoted for a message: ``repr`` escapes newlines, ANSI codes, surrogates
    and other unprintable characters, and the length is bounded."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def depth(obj: object) -> int:
    """How deeply objects and arrays nest in ``obj`` (``{}`` is 1, ``{"a": []}`` is 2); iterative."""
    deepest = 0
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in node)
    return deepest


def has_surrogates(text: str) -> bool:
    """True if ``text`` holds a lone surrogate (from a ``\\ud800`` escape), which is not storable UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    return _KINDS.get(type(value), type(value).__name__)


_KINDS: dict[type, str] = {
    dict: "an object",
    _Duplicated: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _no_default(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")  # pragma: no cover - parsed JSON only


def _compact_encoder() -> Callable[[object], str]:
    """``json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``, faster.

    ``json.dumps`` with any non-default argument builds a new ``JSONEncoder`` per call (3.1 us for a
    typical body); calling the C encoder directly, without the circular-reference check that parsed
    JSON never needs, takes 1.2 us. The output is byte-for-byte the same (tested).
    """
    try:
        from _json import encode_basestring, make_encoder
    except ImportError:  # pragma: no cover - CPython always has _json
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    encoder = make_encoder(None, _no_default, encode_basestring, None, ":", ",", False, False, False)
    return lambda obj: "".join(encoder(obj, 0))


encode_compact = _compact_encoder()
"""Compact JSON text of a parsed value; raises ``ValueError`` on a non-finite float."""
