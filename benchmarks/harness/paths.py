"""Where the benchmarks keep their data and results, and the constants both clients share."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent
"""``benchmarks/``: on ``PYTHONPATH`` of the children started with ``python -m harness.NAME``."""
ROOT = BENCHMARKS.parent
DATA = BENCHMARKS / "data"
"""Generated manifests (git-ignored)."""
RESULTS_DIR = DATA / "run_results"
"""One JSON file a benchmark run (``report.save``), and py-spy profiles."""
API_KEY = "sk-bench-not-a-real-key"
MODEL = "gpt-4o-mini"
