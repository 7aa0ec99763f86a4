"""Adding up a streamed OpenAI chat completion: ``chat.completion.chunk`` events in, the
``chat.completion`` they make out, in the shape a request without ``stream`` gets back.

docs/streaming.md gives the rules; in short: each choice's ``delta`` strings (``content``, ``refusal``)
are concatenated, ``tool_calls`` are merged by their ``index`` (``function.arguments`` concatenated),
``logprobs`` lists are extended, the last non-null ``finish_reason`` wins, and the ``usage`` chunk
(``stream_options.include_usage``) gives the usage. The stream is complete when ``data: [DONE]`` has
come, or when it ended cleanly after every choice had its ``finish_reason`` (OpenAI-compatible servers
that send no ``[DONE]``); anything else is a cut stream. An ``error`` member in a chunk is an error event.
The SDK's own accumulator (``openai.lib.streaming.chat.ChatCompletionStreamState``) is the reference: a
unit test feeds both the same events and compares.
"""

from __future__ import annotations

import json
from typing import Any, Final

from batchrunner.providers.sse import SseEvent
from batchrunner.providers.streaming import ErrorEvent

__all__ = ["ChatStream"]

_HEAD_FIELDS: Final = ("id", "created", "model", "service_tier", "system_fingerprint")
_TEXT_FIELDS: Final = ("content", "refusal")


class ChatStream:
    """The chat completion that the chunks fed so far add up to."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] | None = None
        self._done = False

    def feed(self, event: SseEvent) -> bool:
        """Take one event; True when it carried output (the first such one dates the first token).

        ``ValueError`` when its data is not a chunk, :class:`ErrorEvent` for an error chunk.
        """
        if event.data == "[DONE]":
            self._done = True
            return False
        chunk = json.loads(event.data)
        if not isinstance(chunk, dict):
            raise ValueError(f"a stream event that is not a JSON object: {event.data[:80]!r}")
        if chunk.get("error") is not None:
            raise ErrorEvent(chunk)
        if not self._head:
            self._head = {key: chunk[key] for key in _HEAD_FIELDS if key in chunk}
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        carried = False
        for delta_choice in choices if isinstance(choices, list) else ():
            if isinstance(delta_choice, dict):
                carried = self._add(delta_choice) or carried
        return carried

    @property
    def complete(self) -> bool:
        finished = bool(self._choices) and all(c["finish_reason"] is not None for c in self._choices.values())
        return self._done or finished

    def answer(self) -> dict[str, Any]:
        """The ``chat.completion`` (call once the stream is complete)."""
        body: dict[str, Any] = {
            "id": self._head.get("id"),
            "object": "chat.completion",
            "created": self._head.get("created"),
            "model": self._head.get("model"),
            "choices": [self._choices[index] for index in sorted(self._choices)],
        }
        body |= {key: self._head[key] for key in _HEAD_FIELDS[3:] if key in self._head}
        if self._usage is not None:
            body["usage"] = self._usage
        return body

    def _add(self, delta_choice: dict[str, Any]) -> bool:
        index = delta_choice.get("index", 0)
        choice = self._choices.get(index)
        if choice is None:
            message = {"role": "assistant", "content": None, "refusal": None}
            choice = {"index": index, "message": message, "logprobs": None, "finish_reason": None}
            self._choices[index] = choice
        message = choice["message"]
        delta = delta_choice.get("delta")
        carried = False
        if isinstance(delta, dict):
            if isinstance(delta.get("role"), str):
                message["role"] = delta["role"]
            for key in _TEXT_FIELDS:
                piece = delta.get(key)
                if isinstance(piece, str):
                    message[key] = (message[key] or "") + piece
                    carried = carried or bool(piece)
            calls = delta.get("tool_calls")
            if isinstance(calls, list) and calls:
                _merge_tool_calls(message.setdefault("tool_calls", []), calls)
                carried = True
        if delta_choice.get("finish_reason") is not None:
            choice["finish_reason"] = delta_choice["finish_reason"]
        logprobs = delta_choice.get("logprobs")
        if isinstance(logprobs, dict):
            kept = choice["logprobs"] = choice["logprobs"] or {}
            for key, items in logprobs.items():
                if isinstance(items, list):
                    kept.setdefault(key, []).extend(items)
        return carried


def _merge_tool_calls(calls: list[dict[str, Any]], deltas: list[Any]) -> None:
    """Merge tool-call deltas into ``calls``, by their ``index``: strings concatenated, the rest set."""
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[index]
        for key in ("id", "type"):
            if isinstance(delta.get(key), str):
                call[key] = delta[key]
        function = delta.get("function")
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    call["function"][key] += function[key]
