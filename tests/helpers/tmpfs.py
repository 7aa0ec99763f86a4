"""Small real filesystems for storage-fault tests: a full disk, a read-only mount.

Mounting needs root, as the developers' machines and CI have; a test that cannot mount fails (it does not
skip), so a storage-fault test never passes without having run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``64k``) at ``mount_point`` for the duration of the block."""
    mount_point.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    assert done.returncode == 0, f"cannot mount a {size} tmpfs at {mount_point}: {done.stderr!r}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def remount_read_only(mount_point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
