"""The progress line's rate and ETA, over the recent past, and its last line, on a clock the test moves.

That ``status`` shows an ETA only while a runner is live is in ``cli/test_runs_status.py``.
"""

from __future__ import annotations

import io

from batchrunner.engine.progress import Progress
from batchrunner.models import RunStats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_is_the_last_30_seconds_not_the_whole_run() -> None:
    clock = Clock()
    progress = Progress(
        total=1000, done_before=0, stream=io.StringIO(), live=False, interval_s=1, clock=clock
    )
    for _ in range(60):  # a slow first minute: 1 job a second
        clock.now += 1
        progress.succeeded += 1
        progress.rate()
    for _ in range(30):  # then 10 a second
        clock.now += 1
        progress.succeeded += 10
        progress.rate()
    assert progress.rate() == 10.0  # not (60 + 300) / 90 = 4 jobs/s
    assert "eta 64s" in progress.line()  # 640 left at 10 a second


def stats(**by_state: int) -> RunStats:
    states = {"pending": 0, "claimed": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    states.update(by_state)
    done = states["succeeded"]
    return RunStats(
        run="big", total=300, by_state=states, attempts=done, attempts_this_try=done, input_tokens=3 * done,
        output_tokens=17 * done, cached_tokens=0, cost_usd=done * 0.0000106, priced_results=done,
        unpriced_results=0, first_activity=None, last_activity=None,
    )  # fmt: skip


def test_a_resumed_runs_line_shows_the_runs_figures_all_along() -> None:
    """The line during a resumed run adds this invocation's to the run's, so its figures do not jump
    when the last line (the run's, from the database) comes."""
    out = io.StringIO()
    before = stats(succeeded=54, failed=1, pending=245)
    progress = Progress(total=300, done_before=55, before=before, stream=out, live=False, interval_s=1)
    progress.succeeded, progress.input_tokens, progress.output_tokens = 100, 300, 1700  # this invocation
    progress.cost_usd = 100 * 0.0000106
    line = progress.line()
    assert line.startswith("155/300") and "failed 1" in line and "tokens 462/2,618" in line, line
    assert "$0.0016" in line, line  # 154 answers at $0.0000106
    progress.finish(stats(succeeded=154, failed=1, pending=145))
    assert out.getvalue().strip().split("  ")[4:] == line.split("  ")[4:]  # failed, cost, errors, tokens


def test_the_last_line_shows_the_runs_figures_as_status_does() -> None:
    """A resumed run's last line: the run's counts, tokens and cost, not only this invocation's."""
    out = io.StringIO()
    progress = Progress(total=300, done_before=55, stream=out, live=False, interval_s=1)
    progress.succeeded, progress.input_tokens, progress.output_tokens = 245, 735, 4118  # this invocation
    by_state = {"pending": 0, "claimed": 0, "running": 0, "succeeded": 300, "failed": 0, "cancelled": 0}
    stats = RunStats(
        run="big", total=300, by_state=by_state, attempts=313, attempts_this_try=313, input_tokens=900,
        output_tokens=5096, cached_tokens=0, cost_usd=0.0031926, priced_results=300, unpriced_results=0,
        first_activity=None, last_activity=None,
    )  # fmt: skip
    progress.finish(stats)
    line = out.getvalue().strip()
    assert line.startswith("300/300 (100.0%)") and "tokens 900/5,096" in line and "$0.0032" in line
