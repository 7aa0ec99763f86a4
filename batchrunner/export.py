"""Streaming exports: CSV, JSONL and the OpenAI Batch API output format (docs/design.md "Exports").

CSV cells are neutralised against formula injection (OWASP "CSV injection") by this rule, which the
README's "Exports" paragraph states too: a text cell that starts with ``= + - @``, a tab or a carriage
return is prefixed with ``'``, unless it is a plain number (``-5``, ``+3``, ``-0.5``, ``.5``, ``1e-3``,
``-2.5E+10``: optional sign, digits with at most one decimal point, optional exponent, nothing else, not
even spaces), which a spreadsheet reads as that number and never as a formula. The ``custom_id`` column is
never altered: ids are the key a user joins the results back on, so they are written verbatim even when
they start with ``=``. The number columns (tokens, cost, attempts, latency, TTFT) are ours and always numbers.
``--no-sanitize`` writes every cell as is.

Rows arrive page by page from the store and are formatted a page at a time, so memory stays flat
however large the run. A file target is written to a temporary file beside it, flushed to disk and
renamed into place: a failed export (a full disk, say) leaves no partial file and the old one intact.
Devices and pipes (``/dev/stdout``, ``/dev/full``, a FIFO) are written directly, since they cannot be
renamed over.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import aiofiles

from batchrunner.errors import ExportError
from batchrunner.models import ExportRow

ExportFormat = Literal["csv", "jsonl", "openai-batch"]

CSV_COLUMNS = [
    "custom_id",
    "status",
    "provider",
    "model",
    "output",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "attempts",
    "mode",
    "latency_ms",
    "ttft_ms",
    "error",
]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Cells a spreadsheet would run as a formula (OWASP "CSV injection"); prefixed with ``'`` by default."""

_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A number as a spreadsheet reads it: safe even when it starts with a sign (``fullmatch`` only)."""


def neutralise(cell: str) -> str:
    """Make a cell that a spreadsheet would evaluate display as text instead; numbers are left alone."""
    if cell.startswith(FORMULA_PREFIXES) and _PLAIN_NUMBER.fullmatch(cell) is None:
        return "'" + cell
    return cell


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportOptions:
    format: ExportFormat
    sanitize: bool = True
    metadata_keys: tuple[str, ...] = ()
    run_key: str = ""
    """What identifies the run beyond this database (its id and creation time): the seed of the
    openai-batch ``id``s."""


PageFormatter = Callable[[list[ExportRow]], str]


def csv_header(options: ExportOptions) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([*CSV_COLUMNS, *(f"metadata.{key}" for key in options.metadata_keys)])
    return buffer.getvalue()


def csv_page(rows: list[ExportRow], options: ExportOptions) -> str:
    """One page of CSV rows. It runs for every job of an export, so it calls as little per cell as it can
    (no call for the number columns, none for cells that are empty by construction)."""
    buffer = io.StringIO()
    writerow = csv.writer(buffer).writerow
    clean = neutralise if options.sanitize else _as_is
    keys = options.metadata_keys
    no_metadata = [""] * len(keys)
    for row in rows:
        cells: list[Any] = [
            row.custom_id,  # never altered: the user joins on it (module docstring)
            row.state,
            row.provider,
            clean(row.model) if row.model else "",
            clean(row.output_text) if row.output_text else "",
            "" if row.input_tokens is None else row.input_tokens,
            "" if row.output_tokens is None else row.output_tokens,
            "" if row.cached_tokens is None else row.cached_tokens,
            _usd(row.cost_usd),
            row.attempts,
            row.served_by or "",
            "" if row.latency_ms is None else f"{row.latency_ms:.1f}",
            "" if row.ttft_ms is None else f"{row.ttft_ms:.1f}",
            "" if row.state == "succeeded" else clean(_error_text(row)),
        ]
        if row.metadata_json:
            metadata = json.loads(row.metadata_json)
            cells += [clean(_cell(metadata.get(key))) for key in keys]
        else:
            cells += no_metadata
        writerow(cells)
    return buffer.getvalue()


def _as_is(cell: str) -> str:
    return cell


def jsonl_page(rows: list[ExportRow]) -> str:
    return "\n".join(json.dumps(jsonl_record(row), ensure_ascii=False) for row in rows) + "\n"


def jsonl_record(row: ExportRow) -> dict[str, Any]:
    """One job as a JSONL export line (and as ``batchrunner.results`` yields it)."""
    return {
        "custom_id": row.custom_id,
        "status": row.state,
        "provider": row.provider,
        "endpoint": row.endpoint,
        "model": row.model,
        "request": json.loads(row.request_json),
        "response": json.loads(row.response_json) if row.response_json else None,
        "output": row.output_text,
        "usage": None
        if row.input_tokens is None
        else {
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "cached_tokens": row.cached_tokens,
        },
        "cost_usd": row.cost_usd,
        "attempts": row.attempts,
        "served_by": row.served_by,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "error": _error_object(row),
        "metadata": json.loads(row.metadata_json) if row.metadata_json else None,
    }


def openai_batch_page(rows: list[ExportRow], run_key: str) -> str:
    """The OpenAI Batch API output file format, line for line as OpenAI writes it, so pipelines built for
    it can read our results.

    ``response`` is the HTTP answer of the job's last attempt, with its status code and request id: the
    completion of a job that succeeded, or the provider's error body (``{"error": {...}}``) of an HTTP
    error (status >= 400); ``error`` is null then. ``error`` (``{"code", "message"}``) is used only when
    there is no HTTP answer to give: a timeout or a connection failure, a 2xx that was not a valid answer,
    a job never sent (pending, cancelled). ``code`` is then the error class (``timeout``, ``transient``
    ...) or, for a job never sent, its state.
    """
    lines = []
    for row in rows:
        response = _batch_response(row)
        record = {
            "id": batch_request_id(run_key, row.job_id),
            "custom_id": row.custom_id,
            "response": response,
            "error": None if response is not None else _batch_error(row),
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def batch_request_id(run_key: str, job_id: int) -> str:
    """``batch_req_`` and 32 hex digits, as OpenAI's look: a hash of the run and the job, so every export
    gives a job the same id, and ids from two databases do not collide (``run_key`` holds the run's
    creation time)."""
    digest = hashlib.blake2b(f"{run_key}:{job_id}".encode(), digest_size=16).hexdigest()
    return "batch_req_" + digest


def _batch_response(row: ExportRow) -> dict[str, Any] | None:
    if row.state == "succeeded":
        return {
            "status_code": 200 if row.status_code is None else row.status_code,
            "request_id": row.request_id,
            "body": json.loads(row.response_json) if row.response_json else None,
        }
    if row.status_code is None or row.status_code < 400:
        return None
    body = json.loads(row.error_body) if row.error_body else _error_body_of(row)
    return {"status_code": row.status_code, "request_id": row.request_id, "body": body}


def _error_body_of(row: ExportRow) -> dict[str, Any]:
    """An error body in OpenAI's shape for an attempt that has none stored (the server sent no body, or
    the attempt was recorded before bodies were kept)."""
    return {"error": {"message": row.error, "type": row.error_class, "param": None, "code": None}}


def _batch_error(row: ExportRow) -> dict[str, str]:
    return {
        "code": row.error_class or row.state,
        "message": row.error or f"no answer: the job is {row.state}",
    }


def formatter(options: ExportOptions) -> tuple[str, PageFormatter]:
    """The header and the page formatter of an export format."""
    if options.format == "csv":
        return csv_header(options), lambda rows: csv_page(rows, options)
    if options.format == "jsonl":
        return "", jsonl_page
    return "", lambda rows: openai_batch_page(rows, options.run_key)


async def write_export(pages: AsyncIterator[list[ExportRow]], target: str, options: ExportOptions) -> int:
    """Write every page to ``target`` (a path, or ``-`` for stdout); return the number of rows."""
    header, format_page = formatter(options)
    if target == "-":
        return await _write_stream(pages, sys.stdout, header, format_page)
    path = Path(target)
    if _is_special_file(path):
        return await _write_direct(pages, path, header, format_page)
    return await _write_atomically(pages, path, header, format_page)


async def _write_stream(
    pages: AsyncIterator[list[ExportRow]], out: TextIO, header: str, fmt: PageFormatter
) -> int:
    count = 0
    try:
        out.write(header)
        async for page in pages:
            out.write(fmt(page))
            count += len(page)
        out.flush()
    except OSError as exc:
        raise ExportError(f"could not write the export to stdout: {exc.strerror or exc}") from exc
    return count


async def _copy(pages: AsyncIterator[list[ExportRow]], out: Any, header: str, fmt: PageFormatter) -> int:
    """Write the header and every page to an aiofiles text file; return the number of rows."""
    count = 0
    await out.write(header)
    async for page in pages:
        await out.write(fmt(page))
        count += len(page)
    await out.flush()
    return count


async def _write_direct(
    pages: AsyncIterator[list[ExportRow]], path: Path, header: str, fmt: PageFormatter
) -> int:
    try:
        async with aiofiles.open(path, "w", encoding="utf-8", newline="") as out:
            return await _copy(pages, out, header, fmt)
    except OSError as exc:
        raise ExportError(f"could not write the export to {path}: {exc.strerror or exc}") from exc


async def _write_atomically(
    pages: AsyncIterator[list[ExportRow]], path: Path, header: str, fmt: PageFormatter
) -> int:
    directory = path.parent
    try:
        fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ExportError(f"could not create the export in {directory}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        async with aiofiles.open(temp_name, "w", encoding="utf-8", newline="") as out:
            count = await _copy(pages, out, header, fmt)
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    except BaseException as exc:
        _remove_quietly(temp_name)
        if isinstance(exc, OSError):
            raise ExportError(f"could not write the export to {path}: {exc.strerror or exc}") from exc
        raise
    return count


def _is_special_file(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode)


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _error_object(row: ExportRow) -> dict[str, str | None] | None:
    if row.error_class is None and row.error is None:
        return None
    return {"class": row.error_class, "message": row.error}


def _usd(value: float | None) -> str:
    """Plain decimal notation (a spreadsheet reads ``0.0000066``; ``6.6e-06`` confuses some tools)."""
    return "" if value is None else f"{value:.10f}".rstrip("0").rstrip(".")


def _cell(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _error_text(row: ExportRow) -> str:
    if row.state == "succeeded":
        return ""
    if row.error_class and row.error:
        return f"{row.error_class}: {row.error}"
    return row.error or row.error_class or ""
