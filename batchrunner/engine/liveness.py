"""Is a runner alive? Its process, judged on its own host, and its heartbeat, judged anywhere."""

from __future__ import annotations

import os
import socket
from datetime import datetime

STALE_AFTER_S = 30.0
"""A runner whose heartbeat is older than this is dead, wherever it ran (EngineOptions.stale_after_s)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runner_alive(
    *, host: str, pid: int, heartbeat_at: datetime, now: datetime, stale_after_s: float = STALE_AFTER_S
) -> bool:
    """Alive: its heartbeat is fresh and, if it ran on this machine, its process is still there."""
    if (now - heartbeat_at).total_seconds() > stale_after_s:
        return False
    return host != socket.gethostname() or pid_alive(pid)
