"""The CLI's log output: text for people, or JSON lines for log shippers (``--log-format json``).

In JSON each line on stderr is one object: ``ts`` (UTC, ISO 8601), ``level``, ``event``, ``logger``,
``message``, and the fields the record carries (``run``, ``job``, ``attempt``, ``provider``, ``status``,
``latency_ms``, ``input_tokens``, ``output_tokens``, ``error_class``, ``state`` for an ``attempt``
event). What the commands say to people on stderr (``say``: notices, summaries, errors) becomes an
object too, so the stream stays one object a line. Every key the settings hold is scrubbed from every
line, whatever the message (the adapters redact already; this is the second lock).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, Literal

import click

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "configure",
    "current_format",
    "forget_secrets",
    "keep_secret",
    "say",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
FIELDS: Final = (
    "run", "job", "attempt", "provider", "model", "status", "latency_ms", "ttft_ms", "input_tokens",
    "output_tokens", "error_class", "state", "count", "url",
)  # fmt: skip
"""Record attributes (``extra=``) copied into a JSON line when present."""
TEXT_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"

_format: list[LogFormat] = ["text"]
_secrets: set[str] = set()
_say = logging.getLogger("batchrunner.cli")


def keep_secret(value: str) -> None:
    """A key that must never appear in a log line (scrubbed from JSON and text alike)."""
    if len(value) >= 4:
        _secrets.add(value)


def forget_secrets() -> None:
    _secrets.clear()


def scrub(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object a record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return scrub(json.dumps(document, ensure_ascii=False, default=str))


class _ScrubbingText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure(log_format: LogFormat) -> None:
    """Send batchrunner's log to stderr in ``log_format``; the level stays what it is."""
    _format[0] = log_format
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "batchrunner", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.batchrunner = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    handler.setFormatter(JsonFormatter() if log_format == "json" else _ScrubbingText(TEXT_FORMAT))
    _say.setLevel(logging.INFO)


def current_format() -> LogFormat:
    return _format[0]


def say(message: str, *, event: str = "message", level: int = logging.INFO, **fields: Any) -> None:
    """Tell the user ``message`` on stderr: as it is in text, as a JSON object with ``fields`` in json."""
    if _format[0] == "json":
        _say.log(level, message, extra={"event": event, **fields})
    else:
        click.echo(scrub(message), err=True)
