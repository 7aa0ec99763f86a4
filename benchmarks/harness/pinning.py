"""CPU pinning: on the 2-core machine the fake server gets CPU 1 and each client CPU 0 (``taskset``), so
the server never competes with the client and both clients get exactly one core (batchrunner's SQLite
thread shares the client's core). ``--no-pin`` turns it off."""

from __future__ import annotations

CLIENT_CPU = "0"
SERVER_CPU = "1"


def pin(cpu: str, argv: list[str], pinned: bool) -> list[str]:
    """``argv`` run on ``cpu`` alone (``taskset -c``), or as it is when not ``pinned``."""
    return ["taskset", "-c", cpu, *argv] if pinned else argv


def describe(pinned: bool) -> str:
    return f"server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}" if pinned else "none"
