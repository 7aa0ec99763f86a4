"""JSONL manifest -> validated ``JobSpec`` s, or ``file:line: field: reason`` issues for bad lines.

::

    for item in iter_manifest("jobs.jsonl", ManifestOptions(default_provider="fake")):
        if isinstance(item, JobSpec): ...            # a valid line, ready to insert
        else: ...                                    # list[ManifestIssue]: everything wrong with one line

Modules, from the bottom up: ``strictjson`` (bytes -> a JSON object under docs/reliability.md rule 10),
``checks`` (table-driven field checks), ``options`` (run options, provider resolution), ``formats``
(the three line formats -> JobSpec) and ``reader`` (streaming a file, duplicate ids).

Speed (``python benchmarks/bench_manifest_parse.py``, 200k mixed lines of ~255 bytes, 2-core VM):
``iter_manifest`` ~7.3 us/line (~135k lines/s) against 2.3 us for a bare ``json.loads``. Of that, about
4.5 us is the floor any correct parser here pays: the strict decode with its duplicate-key hook (~1.5),
serialising the body (~1.0), building the frozen ``JobSpec`` (~0.9), reading and the depth pre-check; the
field checks are ~1.0 and the rest is bookkeeping (ids, provider, simple bodies). With a plain
``sqlite3.executemany`` insert the benchmark reaches ~80-92k lines/s, 55-65% of ``json.loads`` +
``executemany``.
"""

from batchrunner.manifest.checks import MAX_ID_LENGTH
from batchrunner.manifest.options import DEFAULT_PROVIDERS, ManifestOptions
from batchrunner.manifest.reader import iter_jobs, iter_manifest, parse_line
from batchrunner.manifest.strictjson import MAX_DEPTH, MAX_LINE_BYTES

__all__ = [
    "DEFAULT_PROVIDERS",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_LINE_BYTES",
    "ManifestOptions",
    "iter_jobs",
    "iter_manifest",
    "parse_line",
]
