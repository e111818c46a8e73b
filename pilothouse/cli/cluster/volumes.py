"""A file system of its own for one directory: an ext4 image file, loop-mounted.

`up` puts etcd's data dir (`<data-dir>/controlplane/etcd`) on one, backed by
`<data-dir>/controlplane/etcd.img` (sparse: it takes disk only as etcd writes), so pods that
fill the node's disk cannot take etcd's space (etcd exits on "no space left on device", and
the control plane with it), and etcd growing cannot fill the node's. `down` unmounts it with
every other mount in the data dir (`cleanup.unmount_below`; the loop device goes with the
mount) and deletes the image with the rest of the data dir. The systemd layout does the same
with an fstab line (README, "Running on VMs").

Invariants: `ensure` is idempotent: an existing mount is kept; an existing image is mounted
again with its data; a directory that already holds data but has no image yet (made by an
older `up`) has its data moved onto the new file system first. It needs root, `mkfs.ext4`
(e2fsprogs) and `mount`/`umount` (util-linux); without them it says why (`VolumeError`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

GiB = 1024**3
# etcd's default backend quota is 2 GiB; the rest is room for compaction and the WAL.
ETCD_VOLUME_BYTES = 4 * GiB
MOUNT_OPTIONS = "loop,nodev,nosuid,noexec"


class VolumeError(Exception):
    """The file system could not be made or mounted; the message says why."""


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split(" ", 5)[4].replace("\\040", " ") == target for line in f)


def ensure(*, image: Path, mount_point: Path, size_bytes: int = ETCD_VOLUME_BYTES) -> None:
    """`mount_point` on the ext4 file system in `image` (made `size_bytes` big if new)."""
    if os.geteuid() != 0:
        raise VolumeError("a file system of its own needs root (loop devices, mount)")
    mount_point.mkdir(parents=True, exist_ok=True)
    if is_mounted(mount_point):
        return
    if not image.exists():
        _make(image, size_bytes)
        if any(mount_point.iterdir()):
            _move_onto(image, mount_point)
    _mount(image, mount_point)
    log.info("volume.mounted", image=str(image), mount_point=str(mount_point))


def release(mount_point: Path) -> None:
    """Unmount (the loop device is released with it); nothing if not mounted."""
    if is_mounted(mount_point):
        _run(["umount", str(mount_point)], what=f"unmounting {mount_point}")


def _make(image: Path, size_bytes: int) -> None:
    image.parent.mkdir(parents=True, exist_ok=True)
    partial = image.with_suffix(".partial")
    with open(partial, "wb") as f:
        f.truncate(size_bytes)  # sparse: blocks are allocated as the file system is written
    os.chmod(partial, 0o600)
    # -m 0: no blocks reserved for root (everything here runs as root anyway).
    argv = ["mkfs.ext4", "-q", "-F", "-m", "0", str(partial)]
    _run(argv, what=f"making a file system in {image}")
    os.replace(partial, image)


def _mount(image: Path, mount_point: Path) -> None:
    _run(
        ["mount", "-o", MOUNT_OPTIONS, str(image), str(mount_point)],
        what=f"mounting {image} on {mount_point}",
    )


def _move_onto(image: Path, directory: Path) -> None:
    """Copy what `directory` holds onto the new file system, then empty `directory`."""
    with tempfile.TemporaryDirectory(prefix=".volume-", dir=directory.parent) as staging:
        _mount(image, Path(staging))
        try:
            shutil.copytree(directory, staging, symlinks=True, dirs_exist_ok=True)
        finally:
            release(Path(staging))
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    log.info("volume.data_moved", image=str(image), directory=str(directory))


def _run(argv: list[str], *, what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise VolumeError(f"{what}: {argv[0]} is not installed") from None
    if done.returncode != 0:
        raise VolumeError(f"{what}: {(done.stderr or done.stdout).strip()}")
