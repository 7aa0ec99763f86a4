"""JSONL manifest -> validated ``JobSpec`` s, or ``file:line: field: reason`` issues for bad lines.

::

    for item in iter_manifest("jobs.jsonl", ManifestOptions(default_provider="fake")):
        if isinstance(item, JobSpec): ...            # a valid line, ready to insert
        else: ...                                    # list[ManifestIssue]: everything wrong with one line

Modules, from the bottom up: ``strictjson`` (bytes -> a JSON object under RELIABILITY.md rule 10),
``checks`` (table-driven field checks), ``options`` (run options, provider resolution), ``formats``
(the three line formats -> JobSpec) and ``reader`` (streaming a file, duplicate ids).
"""

from batchrunner.manifest.checks import MAX_ID_LENGTH
from batchrunner.manifest.options import DEFAULT_PROVIDERS, ManifestOptions
from batchrunner.manifest.reader import iter_manifest, parse_line
from batchrunner.manifest.strictjson import MAX_DEPTH, MAX_LINE_BYTES

__all__ = [
    "DEFAULT_PROVIDERS",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_LINE_BYTES",
    "ManifestOptions",
    "iter_manifest",
    "parse_line",
]
