"""The standard side-by-side case: one manifest, one fake server, ``reps`` alternating rounds of the
bare-SDK loop and ``batchrunner run`` (and of each ``--what-if`` variant), the time of ``batchrunner
submit`` of the same file alone, and with ``profile`` one py-spy run of each client."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import machine, pyspy, rounds, snapshot
from harness.clients import RunResult, run_baseline, run_ours, submit_time
from harness.manifests import write_manifest
from harness.paths import DATA, RESULTS_DIR
from harness.server import Server


@dataclass(frozen=True)
class Case:
    """What both clients are run with."""

    name: str
    manifest: Path
    concurrency: int
    pinned: bool
    rpm: float | None = None
    baseline_retries: int = 0
    cap_s: float | None = None


def ours(
    case: Case,
    server: Server,
    *,
    launcher: Sequence[str] = (),
    who: str = "batchrunner",
    profile: Path | None = None,
) -> RunResult:
    """``batchrunner run`` of the case (under ``python -m harness.launcher LAUNCHER`` if given)."""
    return run_ours(
        case.manifest,
        server,
        concurrency=case.concurrency,
        rpm=case.rpm,
        pinned=case.pinned,
        cap_s=case.cap_s,
        launcher=launcher,
        who=who,
        profile=profile,
    )


def baseline(case: Case, server: Server, *, profile: Path | None = None) -> RunResult:
    """The bare-SDK loop on the case."""
    return run_baseline(
        case.manifest,
        server,
        concurrency=case.concurrency,
        retries=case.baseline_retries,
        pinned=case.pinned,
        cap_s=case.cap_s,
        profile=profile,
    )


def what_if_clients(
    case: Case, server: Server, what_ifs: Sequence[str], *, suffix: str = ""
) -> dict[str, Callable[[], RunResult]]:
    """A client per ``NAME=ARGS``: ``batchrunner run`` under ``python -m harness.launcher ARGS``."""
    clients: dict[str, Callable[[], RunResult]] = {}
    for spec in what_ifs:
        label, _, launcher = spec.partition("=")
        clients[f"what-if {label}{suffix}"] = functools.partial(
            ours, case, server, launcher=launcher.split(), who=f"what-if {label}"
        )
    return clients


def _profiles(case: Case, server: Server) -> dict[str, Any]:
    """One py-spy run of each client; where their main threads spend their time."""
    profiles = {}
    for who, client in (("baseline", baseline), ("batchrunner", ours)):
        out = RESULTS_DIR / f"profile-{case.name}-{who}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        run = client(case, server, profile=out)
        print(f"  profiled {who:24s} {rounds.describe(run)}")
        if pyspy.wait_for_file(out):
            profiles[who] = pyspy.profile_summary(out)
            pyspy.print_profile(f"{case.name}: {who} (py-spy, {out.name})", profiles[who])
    return profiles


def compare(
    *,
    name: str,
    server_args: Sequence[str],
    jobs: int,
    reps: int,
    concurrency: int,
    pinned: bool,
    rpm: float | None = None,
    baseline_retries: int = 0,
    cap_s: float | None = None,
    profile: bool = False,
    what_ifs: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the case; its figures (medians per client, the machine, the profiles) for ``report.save``."""
    snapshot.activate()
    manifest = write_manifest(DATA / f"run-{name}-{jobs}.jsonl", jobs, f"{name}-{jobs}")
    case = Case(name, manifest, concurrency, pinned, rpm, baseline_retries, cap_s)
    info = machine.machine_info(pinned)
    print(f"{name}: {jobs:,} jobs, concurrency {concurrency}, server {' '.join(server_args)}, {reps} rep(s)")
    with Server(server_args, pinned=pinned) as server:
        clients: dict[str, Callable[[], RunResult]] = {
            "baseline": functools.partial(baseline, case, server),
            "batchrunner": functools.partial(ours, case, server),
            **what_if_clients(case, server, what_ifs),
        }
        results = rounds.alternate(reps, clients)
        profiles = _profiles(case, server) if profile else {}
    submit = submit_time(manifest, pinned=pinned)
    info["load_after"] = machine.loadavg()
    return {
        "name": name,
        "machine": info,
        "jobs": jobs,
        "concurrency": concurrency,
        "server_args": list(server_args),
        "rpm": rpm,
        "submit_wall_s": submit.wall_s,
        "submit_cpu_s": submit.cpu_s,
        "baseline": rounds.summary(results["baseline"]),
        "batchrunner": rounds.summary(results["batchrunner"]),
        "profiles": profiles,
        "what_ifs": {
            label: {"launcher": spec, **rounds.summary(results[f"what-if {label}"])}
            for spec in what_ifs
            for label in [spec.partition("=")[0]]
        },
    }
