"""Writing layers: tar entries in, a gzip blob with its digest and diff id out, reproducibly.

Every layer this builder makes goes through `LayerWriter`, which fixes what makes two builds of
the same content differ elsewhere: entries are written in path order (parents before children),
every mtime is `EPOCH`, owners are numeric (no user or group names), the tar is PAX, and gzip
carries no name or time stamp at a fixed level. The uncompressed stream is hashed as it is
written (the diff id) and so is the compressed one (the blob digest); nothing is read back.

`diff_upper` turns an overlayfs upper dir (what a RUN step changed) into entries: overlay
whiteouts (char device 0:0) become OCI `.wh.<name>` files, opaque directories (xattr
`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry, hard links inside the layer stay links.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

EPOCH = 0
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry to write: the header, and where its file data comes from (if any)."""

    info: tarfile.TarInfo
    path: Path | None = None  # a host file to read the data from
    data: bytes | None = None  # or the data itself


@dataclass(frozen=True, slots=True)
class Written:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the gzip blob
    size: int  # blob bytes
    raw_size: int  # uncompressed bytes
    entries: int


def header(name: str, kind: bytes, *, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.strip("/"))
    info.type = kind
    info.mode = mode & 0o7777
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    return info


def sort_key(entry: Entry) -> tuple[str, ...]:
    return tuple(entry.info.name.split("/"))


class _Hashing(io.RawIOBase):
    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hasher.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def write_layer(entries: Iterable[Entry], blob: Path, *, level: int = 6) -> Written:
    """Write `entries` (sorted here) as a gzip layer at `blob`."""
    ordered = sorted(entries, key=sort_key)
    with blob.open("wb") as out:
        compressed = _Hashing(out)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=compressed, compresslevel=level, mtime=0
        ) as gz:
            raw = _Hashing(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for entry in ordered:
                    if entry.info.isreg():
                        if entry.data is not None:
                            entry.info.size = len(entry.data)
                            tar.addfile(entry.info, io.BytesIO(entry.data))
                        else:
                            assert entry.path is not None
                            with entry.path.open("rb") as handle:
                                entry.info.size = os.fstat(handle.fileno()).st_size
                                tar.addfile(entry.info, handle)
                    else:
                        entry.info.size = 0
                        tar.addfile(entry.info)
    return Written(
        diff_id="sha256:" + raw.hasher.hexdigest(),
        digest="sha256:" + compressed.hasher.hexdigest(),
        size=compressed.size,
        raw_size=raw.size,
        entries=len(ordered),
    )


def is_opaque(path: Path) -> bool:
    """Whether an unpacked or upper directory is marked opaque (overlayfs's xattr)."""
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def diff_upper(upper: Path, *, drop: frozenset[str] = frozenset()) -> list[Entry]:
    """Entries for everything in an overlay upper dir (names relative to it), except `drop`.

    Hard links are resolved in written order, so a link always names an entry before it.
    """
    found: list[tuple[tuple[str, ...], str, Path, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(upper):
        base = Path(dirpath)
        rel_base = base.relative_to(upper).as_posix()
        for name in dirnames + filenames:
            rel = name if rel_base == "." else f"{rel_base}/{name}"
            if rel in drop:
                continue
            path = base / name
            found.append((tuple(rel.split("/")), rel, path, os.lstat(path)))
    found.sort(key=lambda item: item[0])
    links: dict[tuple[int, int], str] = {}
    out: list[Entry] = []
    for _, rel, path, st in found:
        mode = st.st_mode
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            parent, _, name = rel.rpartition("/")
            wh = f"{parent}/{WHITEOUT}{name}" if parent else f"{WHITEOUT}{name}"
            out.append(Entry(header(wh, tarfile.REGTYPE, mode=0o644), data=b""))
            continue
        own = {"mode": mode, "uid": st.st_uid, "gid": st.st_gid}
        if stat.S_ISDIR(mode):
            out.append(Entry(header(rel, tarfile.DIRTYPE, **own)))
            if is_opaque(path):
                out.append(Entry(header(f"{rel}/{OPAQUE}", tarfile.REGTYPE, mode=0o644), data=b""))
        elif stat.S_ISLNK(mode):
            info = header(rel, tarfile.SYMTYPE, **own)
            info.linkname = os.readlink(path)
            out.append(Entry(info))
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info = header(rel, tarfile.LNKTYPE, **own)
                info.linkname = links[key]
                out.append(Entry(info))
                continue
            links[key] = rel
            out.append(Entry(header(rel, tarfile.REGTYPE, **own), path=path))
        elif stat.S_ISFIFO(mode):
            out.append(Entry(header(rel, tarfile.FIFOTYPE, **own)))
        # sockets and device nodes made by a build step are not kept in the image
    return out
