"""The fake provider server in its own (pinned) process, shared by every client of a benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness import pinning, snapshot


class Server:
    """``python -m batchrunner.fakeserver --seed 1 ARGS`` of the code under test; ``reset()`` between runs."""

    def __init__(self, args: Sequence[str], *, pinned: bool = True) -> None:
        snapshot.activate()
        from batchrunner.fakeserver.testing import FakeServerProcess

        self.args = list(args)
        self.proc = FakeServerProcess(["--seed", "1", *args])
        self.proc.args = pinning.pin(pinning.SERVER_CPU, self.proc.args, pinned)

    def __enter__(self) -> Server:
        self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()

    @property
    def url(self) -> str:
        return self.proc.openai_base_url

    def reset(self) -> None:
        self.proc.reset()

    def stats(self) -> dict[str, Any]:
        """The server's books: requests, answers by status, duplicates, peak concurrency, answer span."""
        return self.proc.stats(prompts=False)
