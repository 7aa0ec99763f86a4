"""Server-sent events, the format both LLM APIs stream answers in: lines in, events out.

Follows the event-stream rules as docs/streaming.md states them: ``event:`` names the event, each
``data:`` line adds a line to its data, a blank line ends (dispatches) the event; ``id:``, ``retry:``,
other fields and ``:`` comments are ignored; one space after the colon is dropped. An event with no
``data:`` line is not dispatched, nor is one the stream ends in the middle of (no blank line after it):
both transports hand lines over without their line ends.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseEvent", "SseParser"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its name (``None`` when the stream names none) and its data."""

    event: str | None
    data: str


class SseParser:
    """Feed it lines; it returns each event as the blank line that ends it arrives."""

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """The event that ``line`` ends, if it is the blank line after one."""
        if not line:
            event = SseEvent(self._event, "\n".join(self._data)) if self._data else None
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
