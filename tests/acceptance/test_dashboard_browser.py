"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) loads the page, then a run
drains against the fake server (into a database that did not exist when the page opened), and the test
reads the rendered DOM: the progress figure reaches the total, the plots have drawn points, the runner and
the errors are listed; then the dashboard restarts and the page reconnects by itself. The screenshot is
kept as a CI artifact (``.ci/artifacts/dashboard.png``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers.browser import Browser, chromium_or_skip
from helpers.dashboard import DashboardProcess
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import MODEL, prompts
from helpers.running import RunnerProcess, run_args

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(60)]

JOBS = 60
ARTIFACT = Path(__file__).resolve().parents[2] / ".ci" / "artifacts" / "dashboard.png"


def streamed_half(path: Path, jobs: dict[str, str]) -> Path:
    """Request lines for the jobs, every other one streamed (so the TTFT plot has points)."""
    with path.open("w", encoding="utf-8") as out:
        for i, (custom_id, prompt) in enumerate(jobs.items()):
            body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": i % 2 == 0}
            line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
            out.write(json.dumps(line) + "\n")
    return path


def text(element: str) -> str:
    return f"document.getElementById({element!r}).textContent"


async def test_the_page_follows_a_run_to_its_end_and_reconnects(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    chromium = chromium_or_skip()
    server = fake_server(latency_ms=300, jitter_ms=200, seed=7, retry_after_s=0)
    db = tmp_path / "browser.db"
    manifest = streamed_half(tmp_path / "browser.jsonl", prompts(JOBS, "b", faults={5: "429", 9: "429"}))
    runner: RunnerProcess | None = None
    try:
        with DashboardProcess(tmp_path, ["--db", str(db)]) as dashboard:
            async with Browser(chromium) as page:
                await page.goto(dashboard.url)
                await page.wait_for(f"{text('link')} === 'live'", 15, "a live socket")
                # the run starts once the page is up (so a loaded machine cannot finish it unseen), into
                # a database that does not exist yet: the page picks the run up by itself
                args = [*run_args(manifest, server), "--db", str(db), "--concurrency", "6"]
                runner = RunnerProcess(tmp_path, args)
                # mid-run: the figure is below the total and the run has a live runner
                partway = await page.wait_for(
                    "(() => { const f = document.getElementById('finished').dataset;"
                    " return +f.total === 60 && +f.finished < 60 && f.finished; })()",
                    20,
                    "the run under way",
                )
                assert 0 <= int(partway) < JOBS
                await page.wait_for(
                    "document.getElementById('finished').dataset.finished === '60'", 40, "the total"
                )
                assert await page.evaluate(text("finished")) == "60 / 60"
                assert await page.evaluate(text("succeeded")) == "60"
                window = await page.evaluate(text("throughput-window"))  # the rate's window, in words
                assert window.startswith("throughput, last ") and window.endswith(" s"), window
                for plot in ("plot-jobs", "plot-tokens", "plot-latency", "plot-ttft", "plot-errors"):
                    points = await page.evaluate(f"+document.getElementById({plot!r}).dataset.points")
                    assert points > 0, plot
                assert await page.evaluate("+document.getElementById('plot-jobs').dataset.nonzero") > 0
                assert await page.evaluate("document.querySelectorAll('#plot-latency polyline').length") == 3
                errors = await page.evaluate(text("errors"))
                assert "b-005" in errors and "b-009" in errors
                assert "browser" in await page.evaluate("document.getElementById('run').value")
                await page.screenshot(ARTIFACT)
                port = dashboard.url.rsplit(":", 1)[1].strip("/")

                dashboard.stop()  # the dashboard goes away ...
                await page.wait_for(f"{text('link')} !== 'live'", 10, "the page to notice")
                with DashboardProcess(tmp_path, ["--db", str(db), "--port", port]):  # ... and comes back
                    await page.wait_for(f"{text('link')} === 'live'", 15, "the page to reconnect")
                    assert await page.evaluate(text("finished")) == "60 / 60"
        assert await asyncio.to_thread(runner.wait) == 0, runner.stderr()
    finally:
        if runner is not None:
            runner.stop()
    assert ARTIFACT.stat().st_size > 10_000
