"""The kubelet's atomic writer: a volume's files replaced all at once, never half-written.

Layout of a volume directory it manages (`pkg/volume/util/atomic_writer.go`):

    ..2024_05_01_12_00_00.123456789/   the current files (one directory per version)
    ..data -> ..2024_05_01_12_00_00.123456789
    <name> -> ..data/<name>            one symlink per top-level name of the payload

`write` makes the new version's directory beside the old, points a temporary symlink at it
and renames it over `..data` (one atomic rename: every reader sees the old version or the new
one), then adds or removes the top-level symlinks and deletes the old version. A payload equal
to what is there changes nothing.

Invariants: paths never leave the volume directory (no absolute path, no ".." component);
files get their payload mode, and with `gid` (the pod's fsGroup) that group and group read.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

from nodeagent.pods.volumes.sources import File, Payload

DATA = "..data"
_DATA_TMP = "..data_tmp"


def write(directory: Path, files: Payload, *, gid: int | None = None) -> bool:
    """Make `directory` hold exactly `files`; True when something changed."""
    for path in files:
        if path.startswith("/") or ".." in path.split("/") or path.startswith(".."):
            raise ValueError(f"payload path {path!r} leaves its volume")
    if gid is not None:  # the group reads every file (the kubelet's fsGroup ownership)
        files = {path: File(f.data, f.mode | 0o440) for path, f in files.items()}
    directory.mkdir(parents=True, exist_ok=True)
    current = _current(directory)
    if current is not None and _read(directory / current) == files:
        return False
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    version = directory / stamp
    version.mkdir(mode=0o755)
    for path, file in files.items():
        target = version / path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(file.data)
        if gid is not None:
            os.chown(target, -1, gid)
        os.chmod(target, file.mode)
    if gid is not None:
        for walk_dir, _, _ in os.walk(version):
            os.chown(walk_dir, -1, gid)
    tmp = directory / _DATA_TMP
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp)
    os.replace(tmp, directory / DATA)
    wanted = {p.split("/", 1)[0] for p in files}
    for name in wanted:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{name}")
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            if entry.name not in (DATA, stamp) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_symlink() and entry.name not in wanted:
            entry.unlink()
    return True


def _current(directory: Path) -> str | None:
    try:
        return os.readlink(directory / DATA)
    except OSError:
        return None


def _read(version: Path) -> Payload:
    out: Payload = {}
    for root, _, names in os.walk(version):
        for name in names:
            path = Path(root) / name
            relative = path.relative_to(version).as_posix()
            out[relative] = File(path.read_bytes(), path.stat().st_mode & 0o7777)
    return out
