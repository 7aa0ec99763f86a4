"""Adding up a streamed Anthropic message: ``message_start`` ... ``message_stop`` events in, the
``Message`` they make out, in the shape a request without ``stream`` gets back.

docs/streaming.md gives the rules; in short: ``message_start`` gives the message, ``content_block_start``
adds a block, ``content_block_delta`` extends it (``text_delta`` text, ``thinking_delta`` thinking,
``signature_delta`` signature, ``citations_delta`` a citation, ``input_json_delta`` the tool input, parsed
at ``content_block_stop``), ``message_delta`` sets ``stop_reason``/``stop_sequence`` and updates the usage
(its non-null fields), ``ping`` is ignored. The stream is complete at ``message_stop``; anything else is a
cut stream. An ``error`` event is an error event. The SDK's own accumulator (its ``accumulate_event``) is
the reference: a unit test feeds both the same events and compares.
"""

from __future__ import annotations

import json
from typing import Any, Final

from batchrunner.providers.sse import SseEvent
from batchrunner.providers.streaming import ErrorEvent

__all__ = ["MessageStream"]

_APPENDED: Final = {"text_delta": "text", "thinking_delta": "thinking"}
"""Deltas whose string extends a field of the block (the field is named)."""
_PARTIAL_JSON: Final = "__partial_json"


class MessageStream:
    """The message that the events fed so far add up to."""

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._done = False

    def feed(self, event: SseEvent) -> bool:
        """Take one event; True when it carried output (the first such one dates the first token).

        ``ValueError`` when its data is not an event of a message stream, :class:`ErrorEvent` for an error.
        """
        payload = json.loads(event.data)
        if not isinstance(payload, dict):
            raise ValueError(f"a stream event that is not a JSON object: {event.data[:80]!r}")
        kind = payload.get("type", event.event)
        if kind == "error":
            raise ErrorEvent(payload)
        if kind == "message_start":
            message = payload.get("message")
            if not isinstance(message, dict):
                raise ValueError("a message_start event without a message")
            self._message = {**message, "content": list(message.get("content") or [])}
            return False
        if kind in ("ping", None) or kind not in _HANDLERS:
            return False
        if self._message is None:
            raise ValueError(f"a {kind} event before message_start")
        return _HANDLERS[kind](self, payload)

    @property
    def complete(self) -> bool:
        return self._done

    def answer(self) -> dict[str, Any]:
        """The ``Message`` (call once the stream is complete)."""
        assert self._message is not None
        return self._message

    def _blocks(self) -> list[dict[str, Any]]:
        assert self._message is not None
        blocks: list[dict[str, Any]] = self._message["content"]
        return blocks

    def _block(self, payload: dict[str, Any]) -> dict[str, Any]:
        index = payload.get("index")
        blocks = self._blocks()
        if not isinstance(index, int) or not 0 <= index < len(blocks):
            kind = payload.get("type")
            raise ValueError(f"a {kind} event for content block {index!r}, which has not started")
        return blocks[index]

    def _block_start(self, payload: dict[str, Any]) -> bool:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            raise ValueError("a content_block_start event without a content_block")
        self._blocks().append(dict(block))
        return False

    def _block_delta(self, payload: dict[str, Any]) -> bool:
        block = self._block(payload)
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            raise ValueError("a content_block_delta event without a delta")
        kind = delta.get("type")
        if kind in _APPENDED:
            field = _APPENDED[kind]
            block[field] = block.get(field, "") + str(delta.get(field, ""))
            return True
        if kind == "input_json_delta":
            block[_PARTIAL_JSON] = block.get(_PARTIAL_JSON, "") + str(delta.get("partial_json", ""))
            return True
        if kind == "signature_delta":
            block["signature"] = delta.get("signature")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))
        return False

    def _block_stop(self, payload: dict[str, Any]) -> bool:
        block = self._block(payload)
        if _PARTIAL_JSON in block:
            partial = block.pop(_PARTIAL_JSON)
            block["input"] = json.loads(partial) if partial else {}
        return False

    def _message_delta(self, payload: dict[str, Any]) -> bool:
        assert self._message is not None
        delta = payload.get("delta")
        if isinstance(delta, dict):
            for key in ("stop_reason", "stop_sequence"):
                if key in delta:
                    self._message[key] = delta[key]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            kept = self._message.get("usage")
            merged = dict(kept) if isinstance(kept, dict) else {}
            merged |= {key: value for key, value in usage.items() if value is not None}
            self._message["usage"] = merged
        return False

    def _message_stop(self, payload: dict[str, Any]) -> bool:
        del payload
        self._done = True
        return False


_HANDLERS: Final = {
    "content_block_start": MessageStream._block_start,
    "content_block_delta": MessageStream._block_delta,
    "content_block_stop": MessageStream._block_stop,
    "message_delta": MessageStream._message_delta,
    "message_stop": MessageStream._message_stop,
}
