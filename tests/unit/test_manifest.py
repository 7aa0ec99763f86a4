"""Reading manifests: strict JSON on hostile input, oddities, ids, streaming (docs/reliability.md rule 10).

The line formats and provider rules are in ``test_manifest_formats.py``.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from batchrunner.errors import ManifestIssue, UsageError
from batchrunner.manifest import (
    MAX_DEPTH,
    MAX_ID_LENGTH,
    MAX_LINE_BYTES,
    ManifestOptions,
    iter_manifest,
    parse_line,
)
from batchrunner.manifest.strictjson import encode_compact
from batchrunner.models import JobSpec

OPTIONS = ManifestOptions(default_model="gpt-4o-mini")
GOOD = b'{"prompt": "hi"}'


def write(tmp_path: Path, data: bytes, name: str = "jobs.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path, options: ManifestOptions = OPTIONS) -> list[JobSpec | list[ManifestIssue]]:
    return list(iter_manifest(path, options))


def jobs(results: list[JobSpec | list[ManifestIssue]]) -> list[JobSpec]:
    return [item for item in results if isinstance(item, JobSpec)]


def issues(results: list[JobSpec | list[ManifestIssue]]) -> list[ManifestIssue]:
    return [issue for item in results if not isinstance(item, JobSpec) for issue in item]


def only_issue(tmp_path: Path, line: bytes) -> ManifestIssue:
    """The single issue of a file whose line 2 is ``line`` (lines 1 and 3 are valid)."""
    path = write(tmp_path, GOOD + b"\n" + line + b"\n" + GOOD.replace(b"}", b', "id": "last"}') + b"\n")
    results = read(path)
    assert len(jobs(results)) == 2, results
    [issue] = issues(results)
    assert issue.file == str(path)
    assert issue.line == 2
    return issue


# --- rejected: each one reported with file, line, field and a reason -------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        (b'{"prompt": "hi",}', "line", "invalid JSON: Expecting property name"),
        (b'{"prompt": "hi"', "line", "invalid JSON: Expecting ',' delimiter"),
        (b"prompt: hi", "line", "invalid JSON: Expecting value (column 1)"),
        (b'{"prompt": "hi"} {"prompt": "again"}', "line", "extra data after the object (column 18)"),
        (b'{"prompt": "tab\there"}', "line", "invalid JSON: Invalid control character"),
        (b"\xef\xbb\xbf" + GOOD, "line", "invalid JSON"),  # a BOM is fine at the start of the file only
        (b'{"prompt": "x", "max_tokens": 1' + b"0" * 5000 + b"}", "line", "a number has too many digits"),
        (b"[1, 2]", "line", "must be a JSON object, not an array"),
        (b'"hello"', "line", "must be a JSON object, not a string"),
        (b"42", "line", "must be a JSON object, not a number"),
        (b"null", "line", "must be a JSON object, not null"),
    ],
)
def test_invalid_json_and_non_objects_are_rejected(
    tmp_path: Path, line: bytes, field: str, reason: str
) -> None:
    issue = only_issue(tmp_path, line)
    assert (issue.field, reason in issue.reason) == (field, True), issue


@pytest.mark.parametrize(
    ("line", "field", "name"),
    [
        (b'{"prompt": "x", "temperature": NaN}', "temperature", "NaN"),
        (b'{"prompt": "x", "metadata": {"score": Infinity}}', "metadata.score", "Infinity"),
        (b'{"prompt": "x", "metadata": {"scores": [1, -Infinity]}}', "metadata.scores.1", "-Infinity"),
    ],
)
def test_nan_and_infinity_are_rejected_with_their_path(
    tmp_path: Path, line: bytes, field: str, name: str
) -> None:
    issue = only_issue(tmp_path, line)
    assert issue.field == field
    assert issue.reason.startswith(f"{name} is not valid JSON")


def test_a_number_that_overflows_to_infinity_is_rejected(tmp_path: Path) -> None:
    issue = only_issue(tmp_path, b'{"prompt": "x", "metadata": {"big": [1e999]}}')
    assert issue.field == "metadata.big.0"
    assert "too large" in issue.reason


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"prompt": "a", "prompt": "b"}', "prompt"),
        (b'{"prompt": "a", "metadata": {"k": 1, "k": 1}}', "metadata.k"),
        (
            b'{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", '
            b'"messages": [{"role": "user", "content": "x", "role": "system"}]}}',
            "body.messages.0.role",
        ),
        # a duplicate, then a syntax error: the syntax error is what the line gets
        (b'{"prompt": "a", "metadata": {"x": {"a": 1, "b": 2, "a": 3}}, "broken": }', "line"),
    ],
)
def test_duplicate_keys_are_rejected_at_any_depth(tmp_path: Path, line: bytes, field: str) -> None:
    issue = only_issue(tmp_path, line)
    assert issue.field == field
    assert "duplicate key" in issue.reason or issue.reason.startswith("invalid JSON")


def nested(levels: int) -> bytes:
    """A simple line whose metadata makes the whole line ``levels`` deep (the line's object is level 1)."""
    inner = b"[" * (levels - 2) + b"]" * (levels - 2)
    return b'{"prompt": "x", "metadata": {"deep": ' + inner + b"}}"


def test_nesting_up_to_the_limit_is_accepted(tmp_path: Path) -> None:
    [job] = jobs(read(write(tmp_path, nested(MAX_DEPTH))))
    assert job.metadata is not None


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 500, 100_000])
def test_nesting_deeper_than_the_limit_is_rejected(tmp_path: Path, levels: int) -> None:
    issue = only_issue(tmp_path, nested(levels))
    assert (issue.field, issue.reason) == ("line", f"nested deeper than {MAX_DEPTH} levels")


@pytest.mark.parametrize(
    ("line", "byte"),
    [
        (b'{"prompt": "caf\xe9"}', "byte 0xe9 at byte 16"),  # Latin-1
        (b'{"prompt": "\xed\xa0\x80"}', "byte 0xed"),  # an encoded surrogate is not UTF-8 either
        (b'\xff\xfe{\x00"\x00', "byte 0xff at byte 1"),  # UTF-16
    ],
)
def test_bytes_that_are_not_utf8_are_rejected(tmp_path: Path, line: bytes, byte: str) -> None:
    issue = only_issue(tmp_path, line)
    assert issue.field == "line"
    assert issue.reason.startswith("not valid UTF-8") and byte in issue.reason


def test_a_lone_surrogate_escape_is_rejected(tmp_path: Path) -> None:
    issue = only_issue(tmp_path, b'{"prompt": "x\\ud800y"}')
    assert issue.field == "prompt"
    assert "surrogate" in issue.reason


def test_a_surrogate_pair_escape_is_text(tmp_path: Path) -> None:
    [job] = jobs(read(write(tmp_path, b'{"prompt": "\\ud83d\\ude00 caf\\u00e9"}')))
    assert "\U0001f600 café" in job.request_json  # stored as UTF-8 text, not as escapes


def test_a_line_over_the_limit_is_rejected_without_being_parsed_or_held(tmp_path: Path) -> None:
    big = b'{"prompt": "' + b"a" * (3 * MAX_LINE_BYTES) + b'"}'
    path = write(tmp_path, GOOD + b"\n" + big + b"\n" + GOOD.replace(b"}", b', "id": "last"}'))
    tracemalloc.start()
    try:
        results = read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [type(item) for item in results] == [JobSpec, list, JobSpec]
    [issue] = issues(results)
    assert (issue.line, issue.field) == (2, "line")
    assert f"longer than {MAX_LINE_BYTES} bytes" in issue.reason
    assert peak < 1.2 * MAX_LINE_BYTES  # one bounded read of it, not the whole 24 MiB line


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_the_line_limit_is_exact_whatever_the_line_end(tmp_path: Path, ending: bytes) -> None:
    def line(size: int) -> bytes:
        head = b'{"prompt": "'
        return head + b"a" * (size - len(head) - 2) + b'"}'

    assert len(line(MAX_LINE_BYTES)) == MAX_LINE_BYTES
    [job] = jobs(read(write(tmp_path, line(MAX_LINE_BYTES) + ending)))
    assert len(job.request_json) > MAX_LINE_BYTES - 100
    [issue] = issues(read(write(tmp_path, line(MAX_LINE_BYTES + 1) + ending)))
    assert (issue.line, issue.field) == (1, "line")


@pytest.mark.parametrize("size", [65_535, 65_536, 65_537, 200_000])  # around the reader's 64 KiB reads
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_long_lines_within_the_limit_are_read_whole(tmp_path: Path, size: int, ending: bytes) -> None:
    def line(n: int) -> bytes:
        head = b'{"prompt": "'
        return head + b"a" * (n - len(head) - 2) + b'"}'

    results = read(write(tmp_path, line(size) + b"\n" + line(size - 1) + ending))
    assert [len(job.body["messages"][0]["content"]) for job in jobs(results)] == [size - 14, size - 15]


def test_parse_line_checks_the_limit_too() -> None:
    result = parse_line(b" " + b"1" * (MAX_LINE_BYTES + 1), line_number=3, file="f", options=OPTIONS)
    assert isinstance(result, list)
    assert result[0].reason.startswith("longer than")


# --- accepted: the harmless oddities of real files --------------------------------------------------------


def test_bom_crlf_blank_lines_and_no_final_newline_are_accepted(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf{"prompt": "one"}\r\n\r\n   \t \n{"prompt": "two"}\r\n\n{"prompt": "three"}'
    results = read(write(tmp_path, data))
    assert [
        (job.line_number, job.custom_id, job.body["messages"][0]["content"]) for job in jobs(results)
    ] == [
        (1, "line-1", "one"),
        (4, "line-4", "two"),
        (6, "line-6", "three"),
    ]
    assert issues(results) == []


def test_a_bom_alone_or_an_empty_file_gives_nothing(tmp_path: Path) -> None:
    assert read(write(tmp_path, b"")) == []
    assert read(write(tmp_path, b"\xef\xbb\xbf\n\n")) == []


def test_whitespace_around_a_line_is_fine(tmp_path: Path) -> None:
    [job] = jobs(read(write(tmp_path, b'  \t{"prompt": "x"}  \r\n')))
    assert job.custom_id == "line-1"


def test_columns_count_the_whitespace_before_the_object(tmp_path: Path) -> None:
    issue = only_issue(tmp_path, b'   {"prompt": }')
    assert issue.reason == "invalid JSON: Expecting value (column 15)"


# --- ids ------------------------------------------------------------------------------------------------


def test_lines_without_an_id_get_their_line_number_stably(tmp_path: Path) -> None:
    path = write(tmp_path, b'\n{"prompt": "a"}\n{"id": "mine", "prompt": "b"}\n\n{"prompt": "c"}\n')
    first = [job.custom_id for job in jobs(read(path))]
    assert first == ["line-2", "mine", "line-5"]
    assert [job.custom_id for job in jobs(read(path))] == first


@pytest.mark.parametrize(
    ("lines", "dup_line", "field", "first_line"),
    [
        ([b'{"id": "a", "prompt": "x"}', b'{"id": "a", "prompt": "y"}'], 2, "id", 1),
        (
            [
                b'{"custom_id": "a", "params": {"model": "m", "max_tokens": 1, '
                b'"messages": [{"role": "user", "content": "x"}]}}',
                GOOD,
                b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", '
                b'"body": {"model": "e", "input": "x"}}',
            ],
            3,
            "custom_id",
            1,
        ),
        # an explicit id that is also another line's automatic id, either way round
        ([b'{"id": "line-3", "prompt": "x"}', GOOD, GOOD], 3, "id", 1),
        ([GOOD, GOOD, b'{"id": "line-1", "prompt": "x"}'], 3, "id", 1),
        ([GOOD, b'{"id": "line-2", "prompt": "x"}', b'{"id": "line-2", "prompt": "y"}'], 3, "id", 2),
    ],
)
def test_a_duplicate_id_is_an_issue_on_the_later_line_naming_the_first(
    tmp_path: Path, lines: list[bytes], dup_line: int, field: str, first_line: int
) -> None:
    results = read(write(tmp_path, b"\n".join(lines)))
    [issue] = issues(results)
    assert (issue.line, issue.field) == (dup_line, field)
    assert f"line {first_line} has the same id" in issue.reason
    assert len(jobs(results)) == len(lines) - 1


def test_an_explicit_id_equal_to_the_lines_own_automatic_id_is_not_a_duplicate(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"id": "line-1", "prompt": "x"}\n{"id": "line-02", "prompt": "y"}\n' + GOOD)
    assert [job.custom_id for job in jobs(read(path))] == ["line-1", "line-02", "line-3"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'""', "must be 1 to 512 characters long, not 0"),
        (b'"' + b"x" * (MAX_ID_LENGTH + 1) + b'"', "must be 1 to 512 characters long, not 513"),
        (b"17", "must be a string, not a number"),
        (b"null", "must be a string, not null"),
    ],
)
def test_bad_ids_are_rejected(tmp_path: Path, value: bytes, reason: str) -> None:
    issue = only_issue(tmp_path, b'{"id": ' + value + b', "prompt": "x"}')
    assert (issue.field, issue.reason) == ("id", reason)


def test_an_id_of_the_maximum_length_is_accepted(tmp_path: Path) -> None:
    [job] = jobs(read(write(tmp_path, b'{"id": "' + b"x" * MAX_ID_LENGTH + b'", "prompt": "x"}')))
    assert len(job.custom_id) == MAX_ID_LENGTH


# --- several issues, messages, API ----------------------------------------------------------------------


def test_every_issue_of_a_line_is_reported(tmp_path: Path) -> None:
    line = b'{"id": 5, "prompt": "", "max_tokens": 0, "temperature": "hot", "colour": "red"}'
    got = {(issue.line, issue.field) for issue in issues(read(write(tmp_path, line), ManifestOptions()))}
    assert got == {
        (1, "id"),
        (1, "prompt"),
        (1, "max_tokens"),
        (1, "temperature"),
        (1, "colour"),
        (1, "model"),
    }


def test_issues_print_as_file_line_field_reason(tmp_path: Path) -> None:
    issue = only_issue(tmp_path, b'{"prompt": 3}')
    assert str(issue) == f"{tmp_path / 'jobs.jsonl'}:2: prompt: must be a string, not a number"


def test_hostile_keys_are_escaped_in_messages(tmp_path: Path) -> None:
    issue = only_issue(tmp_path, b'{"prompt": "x", "\\u001b[31mred\\n": 1}')
    assert "\n" not in issue.field and "\x1b" not in issue.field
    assert issue.field == "'\\x1b[31mred\\n'"


def test_hostile_keys_are_escaped_in_nested_paths(tmp_path: Path) -> None:
    issue = only_issue(tmp_path, b'{"prompt": "x", "metadata": {"a\\nb": 1, "a\\nb": 2}}')
    assert (issue.field, issue.reason) == ("metadata.'a\\nb'", "duplicate key (the same object has it twice)")


def test_parse_line_returns_a_job_or_its_issues() -> None:
    job = parse_line(b'{"prompt": "x"}\n', line_number=7, file="f.jsonl", options=OPTIONS)
    assert isinstance(job, JobSpec) and job.custom_id == "line-7"
    bad = parse_line(b"", line_number=7, file="f.jsonl", options=OPTIONS)
    assert bad == [ManifestIssue(file="f.jsonl", line=7, field="line", reason=bad[0].reason)]  # type: ignore[index]


def test_a_missing_file_or_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read manifest .*nope\.jsonl: No such file"):
        read(tmp_path / "nope.jsonl")
    with pytest.raises(UsageError, match="Is a directory"):
        read(tmp_path)


@pytest.mark.parametrize(
    "value",
    [
        {"model": "m", "messages": [{"role": "user", "content": 'café \u2028 "quoted" \\ \t / \U0001f600'}]},
        {"x": [1, -2.5, 1e-7, 123456789012345678901234567890, True, False, None, {}, []]},
        {"nested": {"a": {"b": [{"c": "d"}]}}, "": "empty key"},
    ],
)
def test_the_compact_encoder_is_json_dumps_compact(value: dict[str, object]) -> None:
    assert encode_compact(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- streaming ----------------------------------------------------------------------------------------


@pytest.mark.slow  # a big file
def test_a_big_file_streams_in_order(tmp_path: Path) -> None:
    count = 30_000
    with (tmp_path / "big.jsonl").open("wb") as out:
        for i in range(count):
            out.write(json.dumps({"prompt": f"review {i}", "metadata": {"row": i}}).encode() + b"\n")
    results = read(tmp_path / "big.jsonl")
    assert len(results) == count
    assert [job.line_number for job in jobs(results)] == list(range(1, count + 1))
    assert jobs(results)[-1].metadata == {"row": count - 1}


def peak_memory_streaming(path: Path) -> int:
    tracemalloc.start()
    try:
        for _ in iter_manifest(path, OPTIONS):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # big files
def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Lines without ids cost one bit each in the duplicate check; nothing else is kept."""
    line = b'{"prompt": "Classify the sentiment: the battery lasts all day and the screen is great"}\n'
    small, big = write(tmp_path, line * 2_000, "small.jsonl"), write(tmp_path, line * 20_000, "big.jsonl")
    assert peak_memory_streaming(big) - peak_memory_streaming(small) < 20_000
