"""The build context: the directory COPY and ADD read from, its ignore file, content hashes.

Ignore rules (`.containerignore`, else `.dockerignore`, at the context root) follow Docker's:
one pattern a line, `#` comments, `!` for exceptions, `*` `?` `[…]` within one path element,
`**` across any number; a pattern matching a directory excludes all under it; the last pattern
that matches a path decides. Excluding the Containerfile itself is an error naming the line.

Sources: `select(pattern)` expands a COPY source (wildcards allowed) to the context files it
names. A source that climbs out of the context (`../x`) or passes through a symlink whose target
lies outside it is an error; symlinks *inside* copied directories are copied as symlinks, never
followed, so no host file outside the context is ever read.

Content hashes: `digest(files)` is a sha256 over each file's path, type, mode and contents (or
link target): never times. File contents are hashed once per (inode, size, mtime, ctime) and the
result remembered in the build store's stat cache, so an unchanged context is not re-read.

Invariant: nothing here writes into the context.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from pilothouse.cli.build import BuildError, located

IGNORE_FILES = (".containerignore", ".dockerignore")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Rule:
    regex: re.Pattern[str]
    exclude: bool  # False for a `!` exception
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class Source:
    """One context entry to copy: its path relative to the context and to the named source."""

    rel: str  # from the context root, e.g. "src/app.py"
    under: str  # from the source as named in COPY ("app.py" for `COPY src/ …`; "" for itself)
    st: os.stat_result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + "$")


def parse_ignore(text: str) -> list[Rule]:
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line if exclude else line[1:].strip()
        pattern = posixpath.normpath(pattern.lstrip("/")) if pattern.strip("/") else "."
        if pattern == ".":
            pattern = "**"
        rules.append(Rule(_pattern_regex(pattern), exclude, number, line))
    return rules


class BuildContext:
    def __init__(self, root: Path, *, stat_cache: Path | None = None) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise BuildError(f"build context {root} is not a directory")
        self.ignore_file = ""
        self.rules: list[Rule] = []
        for name in IGNORE_FILES:
            path = self.root / name
            if path.is_file():
                self.ignore_file = name
                self.rules = parse_ignore(path.read_text(errors="replace"))
                break
        self._stat_cache_path = stat_cache
        self._hashes: dict[str, list[object]] = {}
        self._dirty = False
        if stat_cache is not None and stat_cache.is_file():
            try:
                self._hashes = json.loads(stat_cache.read_text())
            except ValueError:
                self._hashes = {}

    # -- ignore rules -----------------------------------------------------------------------
    def excluded_by(self, rel: str) -> Rule | None:
        """The rule that excludes `rel` (a context-relative path), or None if it is kept."""
        decided: Rule | None = None
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for rule in self.rules:
            if any(rule.regex.match(p) for p in prefixes):
                decided = rule if rule.exclude else None
        return decided

    def check_containerfile(self, containerfile: Path) -> None:
        """Refuse an ignore file that excludes the Containerfile (it would not be in context)."""
        try:
            rel = containerfile.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return  # a Containerfile outside the context is not subject to its ignore file
        rule = self.excluded_by(rel)
        if rule is not None:
            raise BuildError(
                located(
                    self.ignore_file,
                    rule.line,
                    f"pattern {rule.text!r} excludes the Containerfile {rel!r} from the build "
                    f"context; add `!{rel}` after it or narrow the pattern",
                )
            )

    # -- sources ----------------------------------------------------------------------------
    def select(self, pattern: str, *, where: str) -> list[Source]:
        """The context entries a COPY/ADD source names (files, dirs and their contents)."""
        clean = posixpath.normpath("/" + pattern).lstrip("/")
        raw = posixpath.normpath(pattern.lstrip("/")) if pattern.strip("/") else "."
        if raw == ".." or raw.startswith("../"):
            raise BuildError(
                f"{where}: source {pattern!r} is outside the build context {self.root}; "
                "move the file into the context directory"
            )
        if any(c in clean for c in "*?["):
            matches = self._glob(clean)
            if not matches:
                raise BuildError(f"{where}: no file in the build context matches {pattern!r}")
        else:
            matches = [clean or "."]
        out: list[Source] = []
        for rel in matches:
            out.extend(self._expand(rel, where=where, named=pattern))
        return out

    def _glob(self, pattern: str) -> list[str]:
        regex = _pattern_regex(pattern)
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            base = Path(dirpath).relative_to(self.root).as_posix()
            for name in dirnames + filenames:
                rel = name if base == "." else f"{base}/{name}"
                if regex.match(rel) and self.excluded_by(rel) is None:
                    found.append(rel)
        return sorted(found)

    def _inside(self, rel: str, *, where: str, named: str) -> Path:
        """The real path of `rel`, refusing one that leaves the context through a symlink."""
        path = self.root / rel if rel != "." else self.root
        real = Path(os.path.realpath(path))
        if real != self.root and not real.is_relative_to(self.root):
            raise BuildError(
                f"{where}: source {named!r} is a symlink (or under one) that points to {real}, "
                f"outside the build context {self.root}; copy the file into the context instead"
            )
        return real

    def _expand(self, rel: str, *, where: str, named: str) -> list[Source]:
        real = self._inside(rel, where=where, named=named)
        try:
            st = real.stat()
        except FileNotFoundError:
            raise BuildError(
                f"{where}: source {named!r} does not exist in the build context {self.root}"
            ) from None
        if rel != "." and self.excluded_by(rel) is not None:
            rule = self.excluded_by(rel)
            assert rule is not None
            raise BuildError(
                f"{where}: source {named!r} is excluded by {self.ignore_file} line {rule.line} "
                f"({rule.text!r})"
            )
        if not stat.S_ISDIR(st.st_mode):
            return [Source(rel=rel, under="", st=st)]
        out = []
        real_root = real
        for dirpath, dirnames, filenames in os.walk(real_root):
            dirnames.sort()
            sub = Path(dirpath).relative_to(real_root).as_posix()
            for name in sorted(dirnames + filenames):
                under = name if sub == "." else f"{sub}/{name}"
                crel = under if rel == "." else f"{rel}/{under}"
                if self.excluded_by(crel) is not None:
                    if name in dirnames:
                        dirnames.remove(name)  # exceptions under it are rare; Docker walks on
                    continue
                out.append(Source(rel=crel, under=under, st=os.lstat(Path(dirpath) / name)))
        return out

    def path(self, src: Source) -> Path:
        """The host path to read `src` from (its own symlink resolved if it was named)."""
        if src.under == "":
            return Path(os.path.realpath(self.root / src.rel))
        return self.root / src.rel

    # -- content hashes ---------------------------------------------------------------------
    def file_hash(self, path: Path, st: os.stat_result) -> str:
        key = str(path)
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        known = self._hashes.get(key)
        if known and known[:4] == stamp:
            return str(known[4])
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        self._hashes[key] = [*stamp, digest]
        self._dirty = True
        return digest

    def digest(self, sources: list[Source]) -> str:
        """sha256 over what would be copied: paths, types, modes, contents; never times."""
        hasher = hashlib.sha256()
        for src in sources:
            st = src.st
            path = self.path(src)
            if stat.S_ISREG(st.st_mode):
                what = self.file_hash(path, st)
            elif stat.S_ISLNK(st.st_mode):
                what = "link:" + os.readlink(path)
            else:
                what = "dir" if stat.S_ISDIR(st.st_mode) else f"type:{stat.S_IFMT(st.st_mode)}"
            hasher.update(f"{src.rel}\0{src.under}\0{st.st_mode:o}\0{what}\n".encode())
        return hasher.hexdigest()

    def save(self) -> None:
        """Write the stat cache back if a hash was computed."""
        if self._dirty and self._stat_cache_path is not None:
            tmp = self._stat_cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._hashes))
            tmp.replace(self._stat_cache_path)
            self._dirty = False
