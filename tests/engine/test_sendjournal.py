"""The send journal survives ``kill -9`` of its runner and is read only once that runner is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from batchrunner.engine.liveness import pid_alive
from batchrunner.engine.sendjournal import SendJournal, journals_of_dead_runners
from batchrunner.models import Lease

WRITER = """
import os, signal, sys
from pathlib import Path
from batchrunner.engine.sendjournal import SendJournal
from batchrunner.models import Lease
journal = SendJournal(Path(sys.argv[1]), "host-1-abc")
for n in range(3):
    journal.record(Lease(job_id=n + 1, token=f"t{n}"))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_runners_journal_is_read_with_every_send_it_recorded(tmp_path: Path) -> None:
    killed = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    mine = SendJournal(tmp_path, "host-2-def")  # this process: alive, not read
    mine.record(Lease(job_id=9, token="x"))

    [(path, runner_id, leases)] = list(journals_of_dead_runners(tmp_path, pid_alive))

    assert (
        runner_id == "host-1-abc"
        and path.name == f"{killed.args and path.name.split('.')[0]}.host-1-abc.sent"
    )
    assert leases == [Lease(job_id=1, token="t0"), Lease(job_id=2, token="t1"), Lease(job_id=3, token="t2")]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    mine.close()
    assert not mine.path.exists()  # a runner that ends removes its own
    assert os.listdir(tmp_path) == [path.name]


def test_an_unwritable_directory_turns_the_journal_off(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    journal = SendJournal(blocked / "sub", "r")  # a file where the directory should be
    journal.record(Lease(job_id=1, token="t"))  # no error: the store's marks remain
    journal.close()
