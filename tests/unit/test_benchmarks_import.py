"""The benchmarks do no work on import: importing every module under ``benchmarks/`` starts no process
(no ``git archive`` of the code under test, no server), unpacks no snapshot and takes well under 2 s.
And the what-if launcher's ``tune`` changes what its flags say, through the public seams only."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

CHILD = """
import importlib, json, os, sys, time

started = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.fork", "os.forkpty"):
        started.append(f"{event} {args[:2]!r}"[:300])
sys.addaudithook(hook)
sys.path.insert(0, sys.argv[1])
before = os.environ.get("PYTHONPATH")
begin = time.perf_counter()
for name in sys.argv[2:]:
    importlib.import_module(name)
seconds = time.perf_counter() - begin
changed = os.environ.get("PYTHONPATH") != before
print(json.dumps({"seconds": seconds, "started": started, "pythonpath_changed": changed}))
"""


def module_names() -> list[str]:
    """Every module of ``benchmarks/``: the scripts and the harness package (found, not listed by hand)."""
    scripts = sorted(path.stem for path in BENCHMARKS.glob("*.py"))
    harness = sorted(f"harness.{path.stem}" for path in (BENCHMARKS / "harness").glob("*.py"))
    return [*scripts, *(name.removesuffix(".__init__") for name in harness)]


def test_importing_every_benchmark_module_does_no_work(tmp_path: Path) -> None:
    names = module_names()
    assert "bench_run_cpu" in names and "harness.snapshot" in names and "harness.launcher" in names
    temp = tmp_path / "tmp"  # where a snapshot would be unpacked (tempfile.gettempdir())
    temp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(temp), "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(BENCHMARKS), *names],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["started"] == [], "a benchmark module started a process on import"
    assert list(temp.iterdir()) == [], "a benchmark module unpacked a snapshot on import"
    assert not report["pythonpath_changed"]
    assert report["seconds"] < 2.0, f"importing the benchmarks took {report['seconds']:.2f} s"


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/harness/launcher.py``, imported as the benchmarks import it."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("harness.launcher")


def test_the_launcher_tunes_retry_limits_and_limiter_through_the_seams(launcher: ModuleType) -> None:
    from batchrunner.engine.options import EngineOptions, Wiring
    from batchrunner.policy.pricing import PriceTable
    from batchrunner.policy.ratelimit import ProviderLimiter, RateLimits
    from batchrunner.policy.retry import RetryPolicy

    def wiring_of(limits: RateLimits) -> Wiring:
        no_provider: Any = None
        return Wiring(
            provider_for=lambda name: no_provider,
            limits_for=lambda name: limits,
            prices=PriceTable(prices={}),
        )

    parser = launcher.what_if_parser()
    opts = parser.parse_args(
        ["--retry-base", "0.1", "--retry-factor", "2", "--pause-jitter", "0", "--no-halving", "--guard",
         "0.05", "--storm", "5/20", "--no-provider-pause"]
    )  # fmt: skip
    options = EngineOptions(retry=RetryPolicy(max_attempts=4))
    options, wiring = launcher.tuner(opts)(options, wiring_of(RateLimits(max_concurrency=8)))
    assert options.retry == RetryPolicy(max_attempts=4, base_delay=0.1, factor=2.0)
    limits = wiring.limits_for("openai")
    assert (limits.pause_jitter_s, limits.min_concurrency, limits.guard_s) == (0.0, 8, 0.05)
    assert (limits.storm_count, limits.storm_window, limits.max_concurrency) == (5, 20, 8)
    engine_own, what_if = ProviderLimiter(limits, name="openai"), wiring.limiter(limits, "openai")
    assert isinstance(what_if, ProviderLimiter)
    pauses = [engine_own.on_rate_limited(None, retry_after=1.0) for _ in range(5)]
    assert pauses[-1] is not None  # a storm by these limits: the engine's own limiter pauses
    assert all(what_if.on_rate_limited(None, retry_after=1.0) is None for _ in range(5))

    options, wiring = launcher.tuner(parser.parse_args([]))(EngineOptions(), wiring_of(RateLimits()))
    assert options == EngineOptions() and wiring.limits_for("openai") == RateLimits()
    assert wiring.limiter is not launcher.no_pause_limiter
