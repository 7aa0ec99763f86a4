"""What a run's records say: the facts a finished ``batchrunner run`` left in its database, and the
rates and tail computed from send and answer times (the same for both clients)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DbFacts:
    """Read from a run's SQLite database after the run (read-only)."""

    states: dict[str, int] = field(default_factory=dict)
    """Jobs by state."""
    first: float | None = None
    """The first attempt's start (Unix seconds)."""
    last: float | None = None
    """The last attempt's end."""
    starts: list[float] = field(default_factory=list)
    """Every attempt's start, in order."""
    ok_starts: list[float] = field(default_factory=list)
    """The start of every attempt answered with a 200."""
    ok_ends: list[float] = field(default_factory=list)
    """The end of every attempt answered with a 200, sorted."""


def db_facts(db: Path) -> DbFacts:
    if not db.exists():
        return DbFacts()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        rows = conn.execute(
            "SELECT started_at, status_code, finished_at FROM attempts ORDER BY started_at"
        ).fetchall()
        last = conn.execute("SELECT max(finished_at) FROM attempts").fetchone()[0]
    finally:
        conn.close()
    starts = [epoch(r[0]) for r in rows]
    return DbFacts(
        states=states,
        first=starts[0] if starts else None,
        last=epoch(last) if last else None,
        starts=starts,
        ok_starts=[epoch(r[0]) for r in rows if r[1] == 200],
        ok_ends=sorted(epoch(r[2]) for r in rows if r[1] == 200),
    )


def epoch(text: str) -> float:
    """A store timestamp (ISO text, UTC without an offset on SQLite) as Unix seconds."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def done_at(first: float | None, ok_ends: Sequence[float], jobs: int) -> dict[str, float]:
    """Seconds from the first request until 50/90/99/100% of the jobs had their answer (the tail)."""
    if first is None or not ok_ends:
        return {}
    marks = {}
    for share in (0.5, 0.9, 0.99, 1.0):
        index = max(0, min(len(ok_ends), round(share * jobs)) - 1)
        if round(share * jobs) <= len(ok_ends):
            marks[f"{share:.0%}"] = round(ok_ends[index] - first, 3)
    return marks


def slope(times: Sequence[float]) -> float | None:
    """Requests per second as the least-squares slope of (send time, cumulative count).

    Unlike count / span it is not fooled by the first and last bursts of a windowed limiter (a run of
    20 windows of 60 requests is 1,200 requests over 19 windows, not 20).
    """
    n = len(times)
    if n < 3:
        return None
    t0 = times[0]
    xs = [t - t0 for t in times]
    mean_x, mean_y = sum(xs) / n, (n - 1) / 2
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (i - mean_y) for i, x in enumerate(xs))
    return sxy / sxx if sxx else None


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values present (None if there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
