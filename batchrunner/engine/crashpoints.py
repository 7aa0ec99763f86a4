"""Named crash points, for tests that kill a runner at an exact moment (docs/reliability.md "Scenarios").

``batchrunner run`` reads ``BATCHRUNNER_TEST_CRASH_AT=NAME[:N]`` (in the CLI, the one place that reads the
environment) and the runner calls ``crash_point(NAME)`` at: ``after-claim`` (jobs leased, nothing sent),
``after-response`` (an answer received, not yet checkpointed) and ``inside-checkpoint`` (a group about to
be written); the provider batch driver at ``after-batch-row`` (a batch's row and jobs committed, nothing
uploaded), ``after-upload`` (OpenAI: the input file uploaded, its id not recorded), ``after-create`` (the
provider batch created, its id not recorded) and ``while-polling`` (a live batch polled). On the N-th hit
(default 1) the process SIGKILLs itself: no cleanup, as in a real crash.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

CrashPoint = Callable[[str], None]

NAMES = frozenset(
    {
        "after-claim",
        "after-response",
        "inside-checkpoint",
        "after-batch-row",
        "after-upload",
        "after-create",
        "while-polling",
    }
)


def never(_name: str) -> None:
    """The production crash point: does nothing."""


def from_spec(spec: str | None) -> CrashPoint:
    """A crash point that kills this process at the N-th hit of the named point."""
    if not spec:
        return never
    name, _, count = spec.partition(":")
    if name not in NAMES:
        raise ValueError(f"unknown crash point {name!r} (known: {', '.join(sorted(NAMES))})")
    remaining = [int(count or "1")]

    def crash_point(hit: str) -> None:
        if hit != name:
            return
        remaining[0] -= 1
        if remaining[0] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash_point
