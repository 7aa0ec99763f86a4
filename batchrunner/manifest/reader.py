"""Read a JSONL manifest as a stream of validated jobs and rejected lines.

Memory stays flat however big the file: it is read in binary, one line at a time, and a line longer than
:data:`MAX_LINE_BYTES` is skipped in chunks without being held whole. The only thing that grows is the
record of ids already seen (for duplicate detection), kept compact by :class:`_SeenIds`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from io import BufferedReader, FileIO

from batchrunner.errors import ManifestIssue, UsageError
from batchrunner.manifest.formats import build_job
from batchrunner.manifest.options import ManifestOptions
from batchrunner.manifest.strictjson import MAX_LINE_BYTES, decode_object, show
from batchrunner.models import JobSpec, ManifestFormat

_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"
_READ_BUFFER = 1 << 16
_CHUNK = 1 << 16
"""Lines are read up to this many bytes at a time; nearly all fit in one read."""
_DEFAULT_OPTIONS = ManifestOptions()


def parse_line(
    raw: bytes, *, line_number: int, file: str, options: ManifestOptions = _DEFAULT_OPTIONS
) -> JobSpec | list[ManifestIssue]:
    """Validate one manifest line (its line end may be included) into a job, or every issue found in it.

    A blank line is an issue here; :func:`iter_manifest` skips blank lines before calling this. Duplicate
    ids need the whole file and are found by :func:`iter_manifest`.
    """
    return _parse(raw, line_number, file, options)


def _parse(
    raw: bytes, line_number: int, file: str, options: ManifestOptions
) -> JobSpec | list[ManifestIssue]:
    obj = decode_object(raw)
    result = build_job(obj, line_number, options) if type(obj) is dict else [obj]
    if type(result) is list:
        return [
            ManifestIssue(file=file, line=line_number, field=field, reason=reason) for field, reason in result
        ]
    return result  # type: ignore[return-value]


def iter_manifest(
    path: str | os.PathLike[str], options: ManifestOptions = _DEFAULT_OPTIONS
) -> Iterator[JobSpec | list[ManifestIssue]]:
    """Stream a manifest file: for each non-blank line, in order, its job or the list of its issues.

    Line numbers are 1-based and count blank lines. A line without an id gets ``line-<number>``: stable
    across re-submits of the same file (so re-submitting is idempotent), readable in exports, and found
    again with ``sed -n <number>p``. The price is that inserting or deleting lines above it changes it.
    A repeated id is an issue on the later line that names the first. Raises :class:`UsageError` if the
    file cannot be opened or read.
    """
    file = os.fspath(path)
    seen = _SeenIds()
    try:
        with BufferedReader(FileIO(file), _READ_BUFFER) as stream:
            for line_number, raw in enumerate(_lines(stream), 1):
                if raw is None:
                    reason = f"longer than {MAX_LINE_BYTES} bytes; not parsed"
                    yield [ManifestIssue(file=file, line=line_number, field="line", reason=reason)]
                elif raw.strip(_JSON_WHITESPACE):
                    result = _parse(raw, line_number, file, options)
                    if type(result) is JobSpec:
                        first = seen.add(result.custom_id, line_number)
                        if first is not None:
                            result = [_duplicate(result, first, file)]
                    yield result
    except OSError as exc:
        raise UsageError(f"cannot read manifest {file}: {exc.strerror or exc}") from exc


def iter_jobs(
    items: Iterable[Mapping[str, object]], options: ManifestOptions = _DEFAULT_OPTIONS, *, label: str = "jobs"
) -> Iterator[JobSpec | list[ManifestIssue]]:
    """Jobs given as Python mappings (the Python API's ``run(jobs=[...])``), checked as manifest lines are.

    Each item is encoded as JSON and validated exactly like a line of a file, so the rules, automatic ids
    (``line-<n>``) and duplicate checks are the same; ``n`` is the item's 1-based position and issues name
    ``label:n``. An item that is not a mapping, or not JSON-encodable, is an issue of its own.
    """
    seen = _SeenIds()
    for number, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            reason = f"expected a mapping (a job dict), not {type(item).__name__}"
            yield [ManifestIssue(file=label, line=number, field="line", reason=reason)]
            continue
        try:
            raw = json.dumps(item, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            yield [ManifestIssue(file=label, line=number, field="line", reason=f"not JSON: {exc}")]
            continue
        result = _parse(raw, number, label, options)
        if type(result) is JobSpec:
            first = seen.add(result.custom_id, number)
            if first is not None:
                result = [_duplicate(result, first, label)]
        yield result


def _lines(stream: BufferedReader[FileIO]) -> Iterator[bytes | None]:
    """The lines of ``stream`` with their line ends (a BOM dropped), or ``None`` for one too long to parse."""
    if stream.peek(len(_BOM))[: len(_BOM)] == _BOM:
        stream.read(len(_BOM))
    readline = stream.readline
    while raw := readline(_CHUNK):
        if raw.endswith(b"\n") or len(raw) < _CHUNK:  # a whole line, or the last one without a line end
            yield raw
        else:
            yield _long_line(raw, readline)


def _long_line(head: bytes, readline: Callable[[int], bytes]) -> bytes | None:
    """The rest of a line longer than one chunk, or ``None`` (and the rest skipped) if over the limit.

    The chunks are joined only for a line within the limit: a line over it is held at most once, up to
    the limit, and never whole (``readline(limit)`` would hold the limit twice while joining).
    """
    chunks, size = [head], len(head)
    while True:
        chunk = readline(_CHUNK)
        size += len(chunk)
        if size > MAX_LINE_BYTES + 2:  # over the limit even without a "\r\n"
            chunks.clear()
            while chunk and not chunk.endswith(b"\n"):
                chunk = readline(_CHUNK)
            return None
        chunks.append(chunk)
        if chunk.endswith(b"\n") or len(chunk) < _CHUNK:
            return b"".join(chunks)


def _duplicate(job: JobSpec, first: int, file: str) -> ManifestIssue:
    field = "id" if job.format is ManifestFormat.SIMPLE else "custom_id"
    reason = f"duplicate id {show(job.custom_id)}: line {first} has the same id"
    if job.format is ManifestFormat.SIMPLE and job.custom_id == f"line-{job.line_number}":
        reason += " (a line without an id gets line-<its number>)"
    return ManifestIssue(file=file, line=job.line_number, field=field, reason=reason)


class _SeenIds:
    """The ids used so far in one file, each with the line that used it first.

    Big files are often simple lines without ids; their automatic ids ``line-<n>`` cost one bit each in a
    bitmap indexed by line number (0.13 MB per million lines). Any other id costs a dict entry with its
    line number (about 60 bytes, measured) and keeps the id string alive (49 bytes + its length for ASCII):
    about 120 MB per million 12-character ids. An explicit id that looks automatic (``"line-7"``) is
    checked against both.
    """

    def __init__(self) -> None:
        self._first_line: dict[str, int] = {}
        self._automatic = bytearray()

    def add(self, custom_id: str, line_number: int) -> int | None:
        """Record ``custom_id`` for ``line_number``; return the earlier line that used it, if any."""
        if custom_id.startswith("line-"):
            if custom_id == f"line-{line_number}":
                first = self._first_line.get(custom_id)
                if first is None:
                    self._set(line_number)
                return first
            number = _automatic_number(custom_id)
            if number is not None and self._has(number):
                return number
        first = self._first_line.setdefault(custom_id, line_number)
        return None if first == line_number else first

    def _set(self, number: int) -> None:
        index = number >> 3
        if index >= len(self._automatic):
            self._automatic.extend(bytes(max(index + 1, 2 * len(self._automatic)) - len(self._automatic)))
        self._automatic[index] |= 1 << (number & 7)

    def _has(self, number: int) -> bool:
        index = number >> 3
        return index < len(self._automatic) and bool(self._automatic[index] >> (number & 7) & 1)


def _automatic_number(custom_id: str) -> int | None:
    """``7`` for ``"line-7"`` (the exact form an automatic id has), else ``None``."""
    digits = custom_id[len("line-") :]
    if 0 < len(digits) <= 18 and digits.isascii() and digits.isdigit() and digits[0] != "0":
        return int(digits)
    return None
