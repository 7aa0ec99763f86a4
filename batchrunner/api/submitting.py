"""``submit``: validate jobs (a JSONL file, or Python mappings) and queue them in one transaction."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from batchrunner import manifest
from batchrunner.api.session import open_store, resolved
from batchrunner.config import Settings
from batchrunner.errors import ConflictError, ManifestError, ManifestIssue, UsageError
from batchrunner.models import JobSpec, SubmitReport
from batchrunner.policy.estimate import JobTally
from batchrunner.store.database import remove_sqlite_file, sqlite_file_to_create
from batchrunner.store.store import Store
from batchrunner.store.submit import JobInserter

JobsSource: TypeAlias = "str | os.PathLike[str] | Iterable[Mapping[str, Any]]"
"""A JSONL manifest's path, or jobs as mappings shaped like its lines (``{"id": ..., "prompt": ...}``)."""

INSERT_BATCH = 2000
ITEMS_LABEL = "jobs"
"""How issues name jobs given as mappings: ``jobs:3: prompt: ...`` is the third."""


async def submit(
    jobs: JobsSource,
    *,
    settings: Settings | None = None,
    run: str | None = None,
    skip_invalid: bool = False,
    tally: JobTally | None = None,
) -> SubmitReport:
    """Validate jobs and queue them in one transaction: all of them, or none.

    ``settings`` (default: the environment's and config file's, :func:`batchrunner.api.settings`) give
    the database and the provider and model of lines that name none. A file's run is named after the
    file unless ``run`` says otherwise; jobs given as mappings need ``run``. Re-submitting the same jobs
    adds nothing; an existing id with different content is a ConflictError. With ``skip_invalid`` the
    valid jobs are queued, and a file's invalid lines written, with their reasons, to
    ``FILE.rejects.jsonl``; without it any invalid job is a ManifestError and nothing is inserted. A
    database that this call created is removed again if it fails. ``tally``, when given, counts the
    valid jobs' tokens as they are read (for :func:`batchrunner.api.estimating.estimate_of`).
    """
    settings = resolved(settings)
    new_file = sqlite_file_to_create(settings.run.db)
    try:
        async with open_store(settings.run.db, create=True) as store:
            return await submit_into(store, settings, jobs, run=run, skip_invalid=skip_invalid, tally=tally)
    except BaseException:
        if new_file is not None:
            remove_sqlite_file(new_file)
        raise


def run_name_of(jobs: JobsSource, run: str | None) -> str:
    """The run that ``jobs`` go to: ``run``, else a file's name without its extension."""
    if run is not None:
        return run
    if isinstance(jobs, str | os.PathLike):
        return Path(jobs).stem
    raise UsageError("name the run (run='...') when the jobs are not a file: the same name resumes it")


async def submit_into(
    store: Store,
    settings: Settings,
    jobs: JobsSource,
    *,
    run: str | None,
    skip_invalid: bool,
    tally: JobTally | None = None,
) -> SubmitReport:
    """Queue ``jobs`` in an open store (``submit`` without opening and closing it)."""
    run_name = run_name_of(jobs, run)
    options = manifest_options(settings)
    source = Path(jobs) if isinstance(jobs, str | os.PathLike) else None
    rejects = _RejectsFile(source) if skip_invalid and source is not None else None
    rejected = _RejectTally(shown=[])
    submitted = {"provider": settings.run.provider, "model": settings.run.model, "skip_invalid": skip_invalid}
    label = str(source) if source is not None else ITEMS_LABEL
    try:
        async with store.bulk_insert(
            run_name, source=str(source) if source else None, options=submitted
        ) as inserter:
            items = manifest_items(jobs, source, options)
            if tally is not None:
                items = _tallied(items, tally)
            lines = await _load(items, inserter, rejected, rejects, skip_invalid)
            if rejected.total and not skip_invalid:
                raise ManifestError(rejected.shown, rejected.total)
            if inserter.conflicts:
                raise ConflictError(run_name, inserter.conflicting_ids, inserter.conflicts)
            if lines == rejected.total and not inserter.already_present:
                raise UsageError(f"{label}: no jobs" + (" (every line is invalid)" if lines else ""))
        rejects_file = rejects.commit() if rejects is not None and rejected.total else None
    finally:
        if rejects is not None:
            rejects.discard()
    return SubmitReport(
        run=run_name,
        file=label,
        lines=lines,
        inserted=inserter.inserted,
        already_present=inserter.already_present,
        rejected=rejected.total,
        rejects_file=rejects_file,
    )


def manifest_options(settings: Settings) -> manifest.ManifestOptions:
    """How manifest lines are read under ``settings``: the default provider and model, the known names."""
    return manifest.ManifestOptions(
        default_provider=settings.run.provider,
        default_model=settings.run.model,
        known_providers=settings.known_providers,
        kinds={name: entry.kind for name, entry in settings.providers.items()},
    )


def _tallied(
    items: Iterator[JobSpec | list[ManifestIssue]], tally: JobTally
) -> Iterator[JobSpec | list[ManifestIssue]]:
    for item in items:
        if isinstance(item, JobSpec):
            tally.add_counted(item.provider, item.model, item.prompt_tokens, item.output_tokens)
        yield item


def manifest_items(
    jobs: JobsSource, source: Path | None, options: manifest.ManifestOptions
) -> Iterator[JobSpec | list[ManifestIssue]]:
    """A file's lines (``source``), else job mappings, each read into a job or its issues."""
    if source is not None:
        return manifest.iter_manifest(source, options)
    return manifest.iter_jobs(jobs, options, label=ITEMS_LABEL)  # type: ignore[arg-type]  # not a path


@dataclass
class _RejectTally:
    """Invalid lines seen so far: the first few kept for the message, all written to a rejects file."""

    shown: list[ManifestIssue]
    total: int = 0


async def _load(
    items: Iterable[JobSpec | list[ManifestIssue]],
    inserter: JobInserter,
    tally: _RejectTally,
    rejects: _RejectsFile | None,
    skip_invalid: bool,
) -> int:
    """Queue valid lines in batches; once a line is invalid (and not skipped) only keep validating."""
    lines = 0
    batch: list[JobSpec] = []
    for item in items:
        lines += 1
        if isinstance(item, JobSpec):
            batch.append(item)
            if len(batch) >= INSERT_BATCH:
                if skip_invalid or not tally.total:
                    await inserter.add(batch)
                batch = []
            continue
        tally.total += 1
        tally.shown.extend(item[: max(0, 20 - len(tally.shown))])
        if rejects is not None:
            rejects.write(item)
    if skip_invalid or not tally.total:
        await inserter.add(batch)
    return lines


class _RejectsFile:
    """``FILE.rejects.jsonl`` (mode 0600): written to a temp file, renamed into place only on success."""

    def __init__(self, source: Path) -> None:
        self.target = source.with_name(source.name + ".rejects.jsonl")
        fd, self.temp_name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.")
        self.out = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, issues: list[ManifestIssue]) -> None:
        record = {
            "file": issues[0].file,
            "line": issues[0].line,
            "errors": [{"field": issue.field, "reason": issue.reason} for issue in issues],
        }
        self.out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def commit(self) -> str:
        self.out.close()
        os.replace(self.temp_name, self.target)
        return str(self.target)

    def discard(self) -> None:
        if not self.out.closed:
            self.out.close()
        if os.path.exists(self.temp_name):
            os.unlink(self.temp_name)
