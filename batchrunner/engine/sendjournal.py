"""A runner's local journal of the requests it sends, written as each one goes out.

The store's send marks (batchrunner.engine.sendmarks) follow a request by a write, which on a busy machine
can lag by more than the request itself takes. So each runner also appends ``JOB_ID TOKEN`` to a file of
its own, synchronously, as the request leaves (over the ``http`` transport when its headers are handed to
the connection, over the SDKs just before the call; ``ProviderRequest.on_sent``): a few microseconds, and
it survives a ``kill -9`` (the kernel keeps what was written; only a power cut could lose the last lines).
A runner that takes back the jobs of a runner that died on the same machine first reads its journal: the
jobs in it were in flight (recorded as interrupted, possibly billed), the others were never sent (their
attempt is refunded). Without a journal (the runner ran on another machine) only the store's marks tell,
and a job they do not show as sent keeps its attempt, since it may have been sent.

Files: ``PID.RUNNER_ID.sent`` in a private directory under the system's temporary directory; removed
when the runner ends, and by the runner that read them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from batchrunner.models import Lease

log = logging.getLogger(__name__)


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"batchrunner-{os.getuid()}" / "sent"


class SendJournal:
    """This runner's journal; if it cannot be written, it is off (the store's marks remain)."""

    def __init__(self, directory: Path, runner_id: str) -> None:
        self.path = directory / f"{os.getpid()}.{runner_id}.sent"
        self._fd: int | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            log.warning("no send journal (%s): a crash may be counted less exactly", exc)

    def record(self, lease: Lease) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, f"{lease.job_id} {lease.token}\n".encode())
        except OSError as exc:  # a full disk: go on without it
            log.warning("send journal off (%s)", exc)
            self.close()

    def close(self) -> None:
        """Close and remove it (the runner has recorded or given back every job it held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)


def journals_of_dead_runners(
    directory: Path, is_alive: Callable[[int], bool]
) -> Iterator[tuple[Path, str, list[Lease]]]:
    """``(file, runner id, leases it sent)`` for each journal whose process is gone."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.sent")):
        pid_text, _, rest = path.name.partition(".")
        if not pid_text.isdigit() or is_alive(int(pid_text)):
            continue
        leases = []
        try:
            for line in path.read_text(encoding="ascii", errors="replace").splitlines():
                job_id, _, token = line.partition(" ")
                if job_id.isdigit() and token:
                    leases.append(Lease(job_id=int(job_id), token=token))
        except OSError:
            continue
        yield path, rest.removesuffix(".sent"), leases
