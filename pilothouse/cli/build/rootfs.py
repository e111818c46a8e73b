"""Layer directories: unpacking a layer blob for overlayfs, and reading a stack of them.

`unpack(blob, dest)` writes a layer tar (gzip or plain) into an empty directory in overlayfs's
own format, so the directory serves as a lower dir: OCI `.wh.<name>` become char devices 0:0,
`.wh..wh..opq` the `trusted.overlay.opaque` xattr. Base layers come from registries, so members
are treated as hostile: names are cleaned and may not climb out; a member whose parent resolves
(through symlinks) outside `dest` is refused; whatever the layer put at a name before is removed
before a file is written there (never written through); device nodes are skipped; hard links
must stay inside `dest`.

`RootView(dirs)` reads the merged file tree of a stack of layer dirs (top first) without
mounting anything: `lstat`, `listdir`, `resolve` (symlinks followed inside the root, never on
the host) and `real_path`. COPY uses it to find existing directories and `--from` sources, and
USER to read /etc/passwd.

Invariant: `RootView` never follows a symlink through the host file system: absolute link
targets are taken relative to the view's root.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path

from pilothouse.cli.build import BuildError
from pilothouse.cli.build.layertar import OPAQUE, OPAQUE_XATTRS, WHITEOUT

_MAX_LINKS = 40


def _clean(name: str) -> str:
    path = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if path == ".." or path.startswith("../"):
        raise BuildError(f"layer member {name!r} climbs out of the layer; refusing the layer")
    return path


def unpack(blob: Path, dest: Path) -> None:
    """Unpack the layer at `blob` into the empty directory `dest` (overlay lower-dir format)."""
    root = os.path.realpath(dest)
    with blob.open("rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                _member(tar, member, root)


def _inside(root: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + "/")


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str) -> None:
    name = _clean(member.name)
    if name == ".":
        return
    parent, _, base = name.rpartition("/")
    parent_path = os.path.join(root, parent) if parent else root
    if parent and not _inside(root, parent_path):
        raise BuildError(f"layer member {member.name!r} is under a symlink leading out; refusing")
    os.makedirs(parent_path, mode=0o755, exist_ok=True)
    if base == OPAQUE:
        os.setxattr(parent_path, OPAQUE_XATTRS[0], b"y")
        return
    if base.startswith(WHITEOUT):
        hidden = base[len(WHITEOUT) :]
        if hidden.startswith(WHITEOUT[1:]) or hidden in ("", ".", ".."):
            return  # aufs metadata, or nonsense
        target = os.path.join(parent_path, hidden)
        if not os.path.lexists(target):
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return
    if member.ischr() or member.isblk():
        return  # a container gets /dev from the runtime
    target = os.path.join(parent_path, base)
    if os.path.lexists(target) and not (member.isdir() and os.path.isdir(target)):
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    if member.islnk():
        link = os.path.join(root, _clean(member.linkname))
        if not _inside(root, link) or not os.path.isfile(link) or os.path.islink(link):
            raise BuildError(f"layer member {member.name!r}: hard link leaves the layer; refusing")
        os.link(link, target, follow_symlinks=False)
        return
    if not (member.isdir() or member.isreg() or member.issym() or member.isfifo()):
        raise BuildError(f"layer member {member.name!r} has unsupported type {member.type!r}")
    member = member.replace(name=os.path.relpath(target, root), deep=False)
    tar.extract(member, root, set_attrs=True, numeric_owner=True, filter="fully_trusted")


class RootView:
    """The merged tree of layer dirs (top first), read without mounting."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dirs)

    def _find(self, rel: str) -> tuple[Path, os.stat_result] | None:
        """The top-most layer entry at `rel` (no symlink in `rel` followed), or None."""
        if rel in ("", "."):
            return (self.dirs[0], os.lstat(self.dirs[0])) if self.dirs else None
        parts = rel.split("/")
        for layer in self.dirs:
            stop = False
            for i in range(1, len(parts)):
                try:
                    st = os.lstat(layer.joinpath(*parts[:i]))
                except FileNotFoundError:
                    break
                except NotADirectoryError:
                    return None
                if not stat.S_ISDIR(st.st_mode):
                    return None  # a file, link or whiteout hides what lower layers had below
                if _is_opaque(layer.joinpath(*parts[:i])):
                    stop = True
            else:
                path = layer.joinpath(*parts)
                try:
                    st = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    if stop:
                        return None
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None  # whited out
                return path, st
            if stop:
                return None
        return None

    def lstat(self, rel: str) -> os.stat_result | None:
        found = self._find(rel)
        return found[1] if found else None

    def real_path(self, rel: str) -> Path | None:
        found = self._find(rel)
        return found[0] if found else None

    def resolve(self, path: str) -> str:
        """`path` with every symlink along it followed inside the root (relative, no "/")."""
        todo = [p for p in path.strip("/").split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join([*done, part])
            found = self._find(candidate)
            if found and stat.S_ISLNK(found[1].st_mode):
                hops += 1
                if hops > _MAX_LINKS:
                    raise BuildError(f"too many levels of symbolic links resolving {path!r}")
                target = os.readlink(found[0])
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            done.append(part)
        return "/".join(done)

    def listdir(self, rel: str) -> list[str]:
        """Names in the merged directory `rel` (whiteouts and hidden entries left out)."""
        names: set[str] = set()
        hidden: set[str] = set()
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        for layer in self.dirs:
            path = layer.joinpath(*parts) if parts else layer
            if not path.is_dir() or path.is_symlink():
                if os.path.lexists(path):
                    break  # a non-directory here hides the lower layers' directory
                continue
            for entry in os.scandir(path):
                if entry.name in names or entry.name in hidden:
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    hidden.add(entry.name)
                else:
                    names.add(entry.name)
            if _is_opaque(path):
                break
        return sorted(names)

    def read(self, rel: str) -> bytes | None:
        """A regular file's bytes (following symlinks inside the root), or None."""
        try:
            resolved = self.resolve(rel)
        except BuildError:
            return None
        found = self._find(resolved)
        if not found or not stat.S_ISREG(found[1].st_mode):
            return None
        return found[0].read_bytes()


def _is_opaque(path: Path) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False
