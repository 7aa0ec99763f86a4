"""Forming provider batches from a run's pending jobs, and building their input files (docs/batch.md).

Jobs are grouped by provider and endpoint, and for OpenAI also by model (an OpenAI batch holds one
model; Anthropic's may mix them), and cut into chunks within the provider's limits (requests and bytes,
:class:`~batchrunner.providers.batchapi.BatchLimits`) and ``--batch-size``. Each chunk's row is committed
with its jobs leased to it before anything is uploaded. A chunk is sized by the exact bytes of its lines
and its file is built later from the jobs the batch holds, page by page, so memory stays flat whatever
the run's size: one page of requests and one chunk's job ids (at most 100,000 integers).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

from batchrunner.engine.batchlines import custom_id
from batchrunner.engine.crashpoints import CrashPoint
from batchrunner.models import BatchInfo, Endpoint
from batchrunner.providers.batchapi import BatchApi
from batchrunner.store.base import BatchStore

__all__ = ["PAGE", "build_input", "form_batches", "new_local_id"]

PAGE: Final = 1000
"""Jobs read per query while sizing a chunk or writing its file."""


def new_local_id() -> str:
    """A batch's own id: unique across databases, since it finds the batch again at the provider."""
    return f"br{secrets.token_hex(6)}"


async def form_batches(
    store: BatchStore,
    run_id: int,
    providers: list[str],
    api_for: Callable[[str], BatchApi],
    *,
    batch_size: int | None,
    crash_point: CrashPoint,
) -> AsyncIterator[BatchInfo]:
    """Cut the run's pending jobs of ``providers`` into batches, yielding each as its row is committed."""
    groups = await store.pending_groups(run_id, providers)
    mixed = {(p, e) for p, e, _ in groups if e == Endpoint.MESSAGES}  # Anthropic: one batch for all models
    seen: set[tuple[str, str, str | None]] = set()
    for provider, endpoint, model in groups:
        group = (provider, endpoint, None if (provider, endpoint) in mixed else model)
        if group in seen:
            continue
        seen.add(group)
        api = api_for(provider)
        cap = min(api.limits.max_requests, batch_size or api.limits.max_requests)
        after = 0
        while True:
            local_id = new_local_id()
            job_ids, size, after = await _chunk(store, run_id, group, api, local_id, cap, after)
            if not job_ids:
                break
            batch = await store.form_batch(
                run_id,
                local_id=local_id,
                provider=provider,
                endpoint=endpoint,
                model=group[2],
                job_ids=job_ids,
                size_bytes=size,
            )
            if batch is not None:
                crash_point("after-batch-row")
                yield batch


async def _chunk(
    store: BatchStore,
    run_id: int,
    group: tuple[str, str, str | None],
    api: BatchApi,
    local_id: str,
    cap: int,
    after: int,
) -> tuple[list[int], int, int]:
    """The next chunk's job ids after ``after`` and its bytes, within ``cap`` requests and the byte limit."""
    endpoint = group[1]
    job_ids: list[int] = []
    size = 0
    while len(job_ids) < cap:
        page = await store.pending_page(
            run_id, group, after, min(PAGE, cap - len(job_ids)), any_model=group[2] is None
        )
        if not page:
            break
        for job_id, request_json in page:
            length = len(api.line(f"{local_id}-{job_id}", endpoint, request_json))
            if job_ids and size + length > api.limits.max_bytes:
                return job_ids, size, after
            job_ids.append(int(job_id))
            size += length
            after = int(job_id)
    return job_ids, size, after


async def build_input(store: BatchStore, batch: BatchInfo, api: BatchApi, directory: Path | None) -> Path:
    """The batch's input file, one request per line in the provider's format, from the jobs it holds.

    Written to a private temporary file (mode 0600: it holds the prompts); the caller removes it.
    """
    fd, name = tempfile.mkstemp(prefix=f"batchrunner-{batch.local_id}-", suffix=".jsonl", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            after = 0
            while page := await store.batch_jobs_page(batch, after, PAGE):
                out.writelines(
                    api.line(custom_id(batch, int(job_id)), endpoint, request_json)
                    for job_id, endpoint, request_json in page
                )
                after = int(page[-1][0])
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)
