"""Scale-out benchmark: 1, 2 and 4 runners on one PostgreSQL queue, and a shared RPM limit.

    python benchmarks/bench_multi_runner.py --pg postgresql://root@127.0.0.1:5432/postgres [--quick]
        [--only scale|shared] [--shared-jobs N] [--code REF ...]

Each case gets a fresh database (created and dropped on the PostgreSQL server named by --pg), a
manifest of simple lines submitted once, and a fake provider server in its own process. The runners
are ``batchrunner run`` subprocesses started together. Reported:

- scale-out: jobs/s from the first to the last request the fake server saw, for 1, 2 and 4 runners at
  concurrency 32 each against 200 ms latency (the ideal is 160 jobs/s per runner);
- shared limit: N runners all told ``--rpm LIMIT`` against a server enforcing LIMIT in 1 s windows: the
  combined rate against the limit, and the share of requests refused with 429.

``--code REF`` (repeatable) runs the runners from ``git archive REF batchrunner`` instead of the working
tree (``--code live`` is the working tree), so that two versions are measured side by side in one run:
the repetitions alternate between them, and each version's median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.snapshot import code_path


def pg_dsn(url: str, database: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def admin(url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(pg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def write_manifest(path: Path, jobs: int, tag: str) -> None:
    with path.open("w") as out:
        for n in range(jobs):
            out.write(
                json.dumps({"id": f"{tag}-{n}", "prompt": f"{tag} job {n}", "model": "gpt-4o-mini"}) + "\n"
            )


@contextlib.contextmanager
def fresh_database(pg: str) -> Iterator[tuple[str, str]]:
    """A new database on the PostgreSQL server of ``pg`` (dropped afterwards): its name, its asyncpg URL."""
    from sqlalchemy.engine import make_url

    name = f"br_bench_{secrets.token_hex(4)}"
    asyncio.run(admin(pg, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(pg).set(database=name, drivername="postgresql+asyncpg")
        yield name, url.render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_runners(runners: int, args: list[str], env: dict[str, str], workdir: Path) -> float:
    """``runners`` processes of ``args`` started together; the wall time until the last exits."""
    started = time.monotonic()
    procs = [
        subprocess.Popen(args, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(runners)
    ]
    errors = [proc.communicate(timeout=900)[1] for proc in procs]
    wall = time.monotonic() - started
    codes = [proc.returncode for proc in procs]
    if any(codes):
        raise RuntimeError(f"runner exit codes {codes}: {errors}")
    return wall


def run_case(
    pg: str,
    *,
    runners: int,
    jobs: int,
    concurrency: int,
    server_args: list[str],
    rpm: int | None,
    code: str | None = None,
) -> dict[str, Any]:
    """One sample: a fresh database, the jobs submitted, ``runners`` runners draining them."""
    from batchrunner.fakeserver.testing import FakeServerProcess

    with fresh_database(pg) as (name, db), tempfile.TemporaryDirectory() as work:
        server = FakeServerProcess(server_args).start()
        try:
            workdir = Path(work)
            manifest = workdir / "jobs.jsonl"
            write_manifest(manifest, jobs, name)
            env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "BATCHRUNNER_DB": db}
            if code is not None:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [code, os.environ.get("PYTHONPATH")]))
            submit = [sys.executable, "-m", "batchrunner", "submit", str(manifest)]
            subprocess.run(submit, env=env, cwd=workdir, check=True, capture_output=True)
            server.reset()
            args = [sys.executable, "-m", "batchrunner", "run", "--base-url", server.openai_base_url]
            args += ["--concurrency", str(concurrency), "--no-progress"]
            if rpm:
                args += ["--rpm", str(rpm)]
            wall = run_runners(runners, args, env, workdir)
            stats = server.stats(prompts=False)
        finally:
            server.stop()
    answered = stats["answers_total"]
    span = stats["answer_span_s"] or wall
    return {
        "runners": runners,
        "jobs": jobs,
        "wall_s": wall,
        "answered": answered,
        "duplicates": stats["duplicates"],
        "requests": stats["requests"],
        "refused_429": stats["by_status"].get("429", 0),
        "span_s": span,
        "jobs_per_s": answered / span,
    }


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, Python {platform.python_version()}"


def alternating(pg: str, codes: list[str], *, repeat: int, **case: Any) -> dict[str, list[dict[str, Any]]]:
    """``repeat`` samples of one case per code version, the versions alternating (same machine state)."""
    paths = {ref: code_path(ref) for ref in codes}
    samples: dict[str, list[dict[str, Any]]] = {ref: [] for ref in codes}
    for _ in range(repeat):
        for ref in codes:
            samples[ref].append(run_case(pg, code=paths[ref], **case))
    return samples


def scale_out(pg: str, *, repeat: int, jobs_per_runner: int, codes: list[str]) -> None:
    print("\n## scale-out: 200 ms latency, concurrency 32 per runner (ideal 160 jobs/s per runner)")
    rates: dict[tuple[str, int], float] = {}
    for runners in (1, 2, 4):
        samples = alternating(
            pg,
            codes,
            repeat=repeat,
            runners=runners,
            jobs=jobs_per_runner * runners,
            concurrency=32,
            server_args=["--latency-ms", "200", "--jitter-ms", "0"],
            rpm=None,
        )
        for ref in codes:
            rate = rates[ref, runners] = statistics.median(s["jobs_per_s"] for s in samples[ref])
            print(
                f"[{ref}] {runners} runner(s): median {rate:.1f} jobs/s ({rate / (160 * runners):.0%} of "
                f"ideal), x{rate / rates[ref, 1]:.2f} vs one, duplicates "
                f"{max(s['duplicates'] for s in samples[ref])}, "
                f"samples {[round(s['jobs_per_s'], 1) for s in samples[ref]]}"
            )


def shared_limit(pg: str, *, repeat: int, jobs: int, codes: list[str], limit: int = 3000) -> None:
    print(
        f"\n## shared limit: server enforces {limit} RPM in 1 s windows; every runner told --rpm {limit}; "
        f"{jobs} jobs, concurrency 32 each, 50 ms latency"
    )
    for runners in (1, 3):
        samples = alternating(
            pg,
            codes,
            repeat=repeat,
            runners=runners,
            jobs=jobs,
            concurrency=32,
            server_args=["--latency-ms", "50", "--rpm", str(limit)],
            rpm=limit,
        )
        for ref in codes:
            rates = [s["jobs_per_s"] * 60 / limit for s in samples[ref]]
            refused = sum(s["refused_429"] for s in samples[ref])
            requests = sum(s["requests"] for s in samples[ref])
            print(
                f"[{ref}] {runners} runner(s): median {statistics.median(rates):.1%} of the limit "
                f"(samples {[f'{r:.1%}' for r in rates]}), 429s {refused} of {requests} requests "
                f"({refused / requests:.2%}), duplicates {max(s['duplicates'] for s in samples[ref])}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg", required=True, help="a PostgreSQL URL whose user may create databases")
    parser.add_argument("--quick", action="store_true", help="small job counts, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["scale", "shared"], help="run one of the two cases")
    parser.add_argument("--shared-jobs", type=int, help="jobs in the shared-limit case (default 1500)")
    parser.add_argument(
        "--code",
        action="append",
        help="a git ref whose batchrunner/ the runners use ('live': the working tree); repeat to compare",
    )
    options = parser.parse_args()
    repeat = 1 if options.quick else options.repeat
    print(f"# {machine()}, {time.strftime('%Y-%m-%d')}")
    if options.only in (None, "scale"):
        scale_out(
            options.pg,
            repeat=repeat,
            jobs_per_runner=320 if options.quick else 1600,
            codes=options.code or ["live"],
        )
    if options.only in (None, "shared"):
        jobs = options.shared_jobs or (400 if options.quick else 1500)
        shared_limit(options.pg, repeat=repeat, jobs=jobs, codes=options.code or ["live"])


if __name__ == "__main__":
    main()
