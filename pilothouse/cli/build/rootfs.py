"""Reading a stack of unpacked layer directories (top first) as one file tree, unmounted.

Layers are unpacked by `pilothouse.oci.unpack` (the node agent's unpack, hostile-archive safe,
in overlayfs's lower-dir format: whiteouts are char devices 0:0, opaque directories carry
`trusted.overlay.opaque`); `RootView(dirs)` reads their merged tree without mounting anything:
`lstat`, `listdir`, `resolve` (symlinks followed inside the root, never on the host) and
`real_path`. COPY uses it to find existing directories and `--from` sources, and USER to read
/etc/passwd.

Invariant: `RootView` never follows a symlink through the host file system: absolute link
targets are taken relative to the view's root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from pilothouse.cli.build import BuildError
from pilothouse.cli.build.layertar import is_opaque

_MAX_LINKS = 40


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
                if is_opaque(layer.joinpath(*parts[:i])):
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
            if is_opaque(path):
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
