"""Batch mode over a large queue: peak memory of ``run --mode batch --no-wait``, beside a naive builder.

    python benchmarks/bench_batch_files.py [--jobs 1000000] [--markdown FILE]

1. A deterministic manifest of ``--jobs`` lines, half OpenAI simple lines (``gpt-4o-mini``), half Anthropic
   Message Batches lines, is submitted into a fresh SQLite database (timed, for the record).
2. **batchrunner**: ``batchrunner run --mode batch --no-wait`` against the fake server (started with
   ``--batch-seconds 86400``, so nothing completes while we measure): it forms the provider batches
   (OpenAI: 50,000 requests a file; Anthropic: 100,000 a batch), builds each input file from the store
   page by page, uploads it streamed from disk, creates the batches and exits. Wall time (process start to
   exit) and peak RSS of that process alone (``os.wait4``). Target (issue 12): peak RSS <= 200 MB.
3. **baseline**, in the same run: what a short script would do (``python benchmarks/bench_batch_files.py
   naive DB DIR``): read every pending job's request with one ``SELECT`` into a list, and write the same
   chunks' lines (same formats, via batchrunner's own ``BatchApi.line``) to files. No upload: it is a
   floor for the time and a measure of what holding the queue in memory costs.

Only 127.0.0.1 is contacted (the fake server).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_submit import Sample, fresh, machine, measure

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"


def write_manifest(jobs: int) -> Path:
    path = DATA / f"batch-{jobs}.jsonl"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    half = jobs // 2
    with path.open("w", encoding="utf-8") as out:
        for i in range(half):
            text = f"Classify the sentiment of review {i}: the product was fine but shipping was slow."
            out.write(json.dumps({"id": f"o{i}", "prompt": text, "model": "gpt-4o-mini", "max_tokens": 20}))
            out.write("\n")
        for i in range(jobs - half):
            params = {
                "model": "claude-haiku-4-5",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": f"Summarise support note {i}: call back tomorrow."}],
            }
            out.write(json.dumps({"custom_id": f"a{i}", "params": params}) + "\n")
    return path


def naive(db: Path, directory: Path) -> int:
    """The baseline: every pending request in memory at once, then the chunks' files written."""
    from batchrunner.providers.batchapi import ANTHROPIC_LIMITS, OPENAI_LIMITS
    from batchrunner.providers.registry import ProviderSettings
    from batchrunner.secret import Secret

    apis = {}
    for name, kind in (("openai", "openai"), ("anthropic", "anthropic")):
        from batchrunner.providers.batchapi import open_batch_api

        settings = ProviderSettings(name=name, kind=kind, api_key=Secret("k"), base_url="http://127.0.0.1:9")
        apis[name] = open_batch_api(settings)
    conn = sqlite3.connect(db)
    query = "SELECT id, provider, endpoint, request_json FROM jobs WHERE state = 'pending'"
    rows = conn.execute(query).fetchall()
    conn.close()
    written = 0
    for provider, limits in (("openai", OPENAI_LIMITS), ("anthropic", ANTHROPIC_LIMITS)):
        api = apis[provider]
        assert api is not None
        mine = [row for row in rows if row[1] == provider]
        for start in range(0, len(mine), limits.max_requests):
            chunk = mine[start : start + limits.max_requests]
            lines = [api.line(f"naive-{job_id}", endpoint, body) for job_id, _, endpoint, body in chunk]
            (directory / f"{provider}-{start}.jsonl").write_bytes(b"".join(lines))
            written += len(lines)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    manifest = write_manifest(args.jobs)
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    db = fresh(work / "batch.db")
    python = sys.executable
    submitted = measure(
        [python, "-m", "batchrunner", "submit", str(manifest), "--run", "bench", "--db", str(db)]
    )
    naive_db = work / "naive.db"
    subprocess.run(["cp", str(db), str(naive_db)], check=True)
    server = subprocess.Popen(
        [python, "-m", "batchrunner", "fake-server", "--port", "0", "--batch-seconds", "86400"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip().rsplit(":", 1)[1]
        env = {
            **os.environ,
            "OPENAI_API_KEY": "bench",
            "ANTHROPIC_API_KEY": "bench",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        }
        run = ["run", "--db", str(db), "--mode", "batch", "--no-wait", "--no-progress"]
        ours = _measure_env([python, "-m", "batchrunner", *run], env)
        (work / "naive").mkdir()
        theirs = measure([python, __file__, "naive", str(naive_db), str(work / "naive")])
        stats = json.loads(_get(f"http://127.0.0.1:{port}/stats?prompts=0"))
    finally:
        server.terminate()
        server.wait()
    conn = sqlite3.connect(db)
    batches = list(conn.execute("SELECT count(*), sum(requests) FROM batches").fetchone())
    conn.close()
    text = _report(args.jobs, submitted, ours, theirs, batches, stats)
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")


def _measure_env(argv: list[str], env: dict[str, str]) -> Sample:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return measure(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _get(url: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return response.read().decode()


def _report(
    jobs: int, submitted: Sample, ours: Sample, theirs: Sample, batches: list[int], stats: dict[str, object]
) -> str:
    info = machine()
    ok = "meets" if ours.peak_rss_mb <= 200 else "MISSES"
    return "\n".join(
        [
            f"### Batch mode over {jobs:,} queued jobs ({info['date']})",
            "",
            f"Machine: {info['nproc']} CPUs, {info['cpu']}, {info['ram']}, Python {info['python']}, "
            f"SQLite {info['sqlite']}, load {info['load']}.",
            f"Command: `python benchmarks/bench_batch_files.py --jobs {jobs}`",
            "",
            "| process | wall s | CPU s | peak RSS MB |",
            "|---|---|---|---|",
            f"| submit (for the record) | {submitted.seconds:.1f} | {submitted.cpu_seconds:.1f} "
            f"| {submitted.peak_rss_mb:.0f} |",
            f"| batchrunner run --mode batch --no-wait | {ours.seconds:.1f} | {ours.cpu_seconds:.1f} "
            f"| {ours.peak_rss_mb:.0f} |",
            f"| baseline: all requests in memory, files written, no upload | {theirs.seconds:.1f} "
            f"| {theirs.cpu_seconds:.1f} | {theirs.peak_rss_mb:.0f} |",
            "",
            f"batchrunner formed {batches[0]} provider batches holding {batches[1]:,} jobs; the fake server "
            f"was given {stats.get('batch_lines')} lines in {stats.get('batches')} batches "
            f"({stats.get('batch_files')} files). Peak RSS {ours.peak_rss_mb:.0f} MB {ok} the 200 MB target; "
            f"{ours.peak_rss_mb / theirs.peak_rss_mb:.2f}x the baseline's.",
            "",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "naive":
        print(naive(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        main()
