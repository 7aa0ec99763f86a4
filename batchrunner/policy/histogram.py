"""Latency histograms: log-spaced buckets, so a run's percentiles cost a few hundred rows, not a sort.

A run's latencies (and times to first token) are counted per bucket as their attempts are written
(``store/writeback.py``); ``status`` reads p50/p95/p99 over the run from the counts. Buckets grow by
``RATIO`` (5%) from ``MIN_MS``: a percentile is reported as the upper bound of its bucket, so it is never
below the true value and at most 5% above it (below ``MIN_MS`` everything is one bucket). The same counts
are kept by the second the attempts finished, for the last minute and the dashboard's plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

__all__ = ["MIN_MS", "RATIO", "bucket_of", "percentile", "upper_bound"]

MIN_MS: Final = 0.1
RATIO: Final = 1.05
_LOG_RATIO: Final = math.log(RATIO)


def bucket_of(ms: float) -> int:
    """The bucket of a latency in milliseconds (0 for anything up to ``MIN_MS``)."""
    if not ms > MIN_MS:
        return 0
    return 1 + int(math.log(ms / MIN_MS) / _LOG_RATIO)


def upper_bound(bucket: int) -> float:
    """The largest latency a bucket holds, in milliseconds."""
    return MIN_MS * RATIO**bucket


def percentile(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of the counted latencies, as its bucket's upper bound; None if
    nothing was counted."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return round(upper_bound(bucket), 1)
    return round(upper_bound(max(counts)), 1)  # pragma: no cover - rank <= total
