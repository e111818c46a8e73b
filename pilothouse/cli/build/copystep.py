"""COPY and ADD: a layer written straight from the sources, no container involved.

`copy_plan` is pure and cheap: it expands the arguments, selects the sources (context files or
another stage's files) and computes the step's cache key from the parent's `fs_key`, the
instruction and the content hash of the sources. Only on a cache miss does `copy_entries` build
the layer's tar entries.

Semantics (Docker's): a source directory's *contents* are copied; several sources or a
wildcard need a destination directory (ending in "/"); a relative destination is under WORKDIR;
missing destination directories are created (0755, owned by --chown from the destination down);
`--chown` takes names from the image's own /etc/passwd and /etc/group; `ADD` of a local tar
archive (plain, gzip, bzip2, xz) unpacks it into the destination. A destination path that
passes through a symlink in the image is resolved inside the image, never on the host.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pilothouse.cli.build import BuildError, layertar, words
from pilothouse.cli.build.containerfile import Instruction
from pilothouse.cli.build.context import BuildContext, Source
from pilothouse.cli.build.imageconfig import State
from pilothouse.cli.build.layertar import Entry, header
from pilothouse.cli.build.rootfs import RootView
from pilothouse.cli.build.steps import chain_key
from pilothouse.cli.build.store import BuildStore, CacheEntry


@dataclass(frozen=True, slots=True)
class CopyPlan:
    key: str
    sources: tuple[tuple[str, tuple[Source, ...]], ...]  # (named source, entries) per argument
    dest: str  # absolute, as written (expanded, joined with WORKDIR)
    dest_is_dir: bool
    chown: str
    chmod: int | None
    heredocs: dict[str, str]  # name -> body, for `COPY <<EOF /path`


def _chmod(ins: Instruction) -> int | None:
    text = ins.flags.get("chmod")
    if text is None:
        return None
    try:
        value = int(text, 8)
    except ValueError:
        raise ins.error(f"--chmod={text}: only octal modes (like 0755) are supported") from None
    if not 0 <= value <= 0o7777:
        raise ins.error(f"--chmod={text}: out of range")
    return value


def copy_plan(
    ins: Instruction,
    state: State,
    *,
    select: Callable[[str], list[Source]],
    content: Callable[[list[Source]], str],
    from_key: str,
    escape: str = "\\",
) -> CopyPlan:
    """Expand the arguments, select and hash the sources, compute the key."""
    env = state.expansion_env()
    try:
        if ins.exec_form is not None:
            items = [words.expand(w, env, escape=escape) for w in ins.exec_form]
        else:
            items = words.split(ins.args, env, escape=escape)
    except words.WordError as exc:
        raise ins.error(str(exc)) from None
    heredocs = {f"<<{h.name}": h for h in ins.heredocs}
    srcs, dest = items[:-1], items[-1]
    bodies: dict[str, str] = {}
    selected: list[tuple[str, tuple[Source, ...]]] = []
    for src in srcs:
        doc = heredocs.get(src) or heredocs.get(f"<<-{src[2:]}")
        if doc is not None:
            bodies[doc.name] = words.expand(doc.body, env) if doc.expand else doc.body
            continue
        selected.append((src, tuple(select(src))))
    wildcard = any(c in s for s, _ in selected for c in "*?[")
    base = str(state.config.get("WorkingDir") or "/")
    path = posixpath.normpath(posixpath.join(base, dest))
    dest_is_dir = dest.endswith("/") or dest in (".", "") or len(srcs) > 1 or wildcard
    chown = words.expand(ins.flags.get("chown", ""), env, escape=escape)
    chmod = _chmod(ins)
    digest = hashlib.sha256()
    for src, entries in selected:
        digest.update(f"{src}\0{content(list(entries))}\n".encode())
    for name, body in sorted(bodies.items()):
        digest.update(f"<<{name}\0{body}\n".encode())
    key = chain_key(
        state.fs_key, ins.keyword, from_key, digest.hexdigest(), path, dest_is_dir, chown, chmod
    )
    return CopyPlan(key, tuple(selected), path, dest_is_dir, chown, chmod, bodies)


class _LayerBuilder:
    """Collects the entries of a COPY layer, creating missing directories once."""

    def __init__(self, view: RootView, *, uid: int, gid: int, chown_from: str) -> None:
        self.view = view
        self.uid, self.gid = uid, gid
        self.chown_from = chown_from  # dirs at or under this path get the --chown owner
        self.entries: dict[str, Entry] = {}

    def _owner(self, rel: str) -> tuple[int, int]:
        under = rel == self.chown_from or rel.startswith(self.chown_from + "/")
        return (self.uid, self.gid) if under or not self.chown_from else (0, 0)

    def target(self, path: str) -> str:
        """`path` with its parent resolved inside the image; missing parents created."""
        parent, name = posixpath.split(path.strip("/"))
        real_parent = self.view.resolve(parent) if parent else ""
        self.ensure_dir(real_parent)
        return f"{real_parent}/{name}" if real_parent else name

    def ensure_dir(self, rel: str) -> None:
        if not rel or rel in self.entries:
            return
        st = self.view.lstat(rel)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return
        self.ensure_dir(posixpath.dirname(rel))
        uid, gid = self._owner(rel)
        self.entries[rel] = Entry(header(rel, tarfile.DIRTYPE, mode=0o755, uid=uid, gid=gid))

    def add(self, entry: Entry) -> None:
        self.entries[entry.info.name] = entry


def copy_entries(
    ins: Instruction,
    plan: CopyPlan,
    *,
    view: RootView,
    open_source: Callable[[Source], Path],
    uid: int,
    gid: int,
) -> list[Entry]:
    """The tar entries of a COPY/ADD layer (context or stage sources)."""
    dest_rel = plan.dest.strip("/")
    dest_dir = view.resolve(dest_rel) if plan.dest_is_dir and dest_rel else dest_rel
    if not plan.dest_is_dir:
        st = view.lstat(view.resolve(dest_rel)) if dest_rel else None
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        dest_dir = view.resolve(dest_rel) if is_dir else ""
    out = _LayerBuilder(view, uid=uid, gid=gid, chown_from=dest_dir or dest_rel)
    if dest_dir:
        out.ensure_dir(dest_dir)
    chown = bool(plan.chown)
    for name, body in plan.heredocs.items():
        target = out.target(f"{dest_dir}/{name}" if dest_dir else dest_rel)
        mode = plan.chmod if plan.chmod is not None else 0o644
        info = header(target, tarfile.REGTYPE, mode=mode, uid=uid, gid=gid)
        out.add(Entry(info, data=body.encode()))
    for named, sources in plan.sources:
        for src in sources:
            host = open_source(src)
            if src.under == "":
                base = posixpath.basename(src.rel.rstrip("/")) or posixpath.basename(named)
                if stat.S_ISDIR(src.st.st_mode):
                    continue  # an empty named directory: its destination exists already
                if ins.keyword == "ADD" and stat.S_ISREG(src.st.st_mode) and _is_archive(host):
                    into = dest_dir or dest_rel
                    out.ensure_dir(into)
                    for entry in _archive_entries(
                        host, into, ins=ins, uid=uid, gid=gid, chown=chown
                    ):
                        out.add(entry)
                    continue
                path = f"{dest_dir}/{base}" if dest_dir else dest_rel
            else:
                path = f"{dest_dir}/{src.under}" if dest_dir else f"{dest_rel}/{src.under}"
                if not dest_dir and dest_rel:
                    out.ensure_dir(view.resolve(dest_rel))
            target = out.target(path)
            out.add(_entry(target, src, host, uid=uid, gid=gid, chown=chown, chmod=plan.chmod))
    return list(out.entries.values())


def _entry(
    target: str, src: Source, host: Path, *, uid: int, gid: int, chown: bool, chmod: int | None
) -> Entry:
    st = src.st if src.under else os.stat(host)
    mode = st.st_mode
    owner = (uid, gid) if chown else (0, 0)
    if stat.S_ISDIR(mode):
        bits = chmod if chmod is not None else mode
        return Entry(header(target, tarfile.DIRTYPE, mode=bits, uid=owner[0], gid=owner[1]))
    if stat.S_ISLNK(mode):
        info = header(target, tarfile.SYMTYPE, mode=0o777, uid=owner[0], gid=owner[1])
        info.linkname = os.readlink(host)
        return Entry(info)
    if stat.S_ISREG(mode):
        bits = chmod if chmod is not None else mode
        return Entry(
            header(target, tarfile.REGTYPE, mode=bits, uid=owner[0], gid=owner[1]), path=host
        )
    raise BuildError(f"{host}: only files, directories and symlinks can be copied")


def _is_archive(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _archive_entries(
    path: Path, into: str, *, ins: Instruction, uid: int, gid: int, chown: bool
) -> Iterator[Entry]:
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            name = posixpath.normpath(member.name.lstrip("/")) if member.name.strip("/") else "."
            if name == ".":
                continue
            if name == ".." or name.startswith("../"):
                raise ins.error(f"{path.name}: member {member.name!r} climbs out of the archive")
            target = f"{into}/{name}" if into else name
            owner = (uid, gid) if chown else (member.uid, member.gid)
            info = header(target, member.type, mode=member.mode, uid=owner[0], gid=owner[1])
            if member.isreg():
                handle = tar.extractfile(member)
                yield Entry(info, data=handle.read() if handle else b"")
            elif member.isdir() or member.isfifo():
                yield Entry(info)
            elif member.issym():
                info.linkname = member.linkname
                yield Entry(info)
            elif member.islnk():
                link = posixpath.normpath(member.linkname.lstrip("/"))
                if link == ".." or link.startswith("../"):
                    raise ins.error(f"{path.name}: hard link {member.name!r} leaves the archive")
                info.linkname = f"{into}/{link}" if into else link
                yield Entry(info)
            # device nodes in an archive are not copied


def write_copy_layer(entries: list[Entry], *, store: BuildStore) -> CacheEntry:
    if not entries:
        return CacheEntry()
    tmp = store.temp_blob()
    try:
        written = layertar.write_layer(entries, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    store.commit_blob(tmp, written.digest)
    return CacheEntry(written.diff_id, written.digest, written.size)


def context_sources(ctx: BuildContext, ins: Instruction) -> Callable[[str], list[Source]]:
    where = f"{ins.file}:{ins.line}: {ins.keyword}"
    return lambda pattern: ctx.select(pattern, where=where)


def view_sources(view: RootView, ins: Instruction, stage: str) -> Callable[[str], list[Source]]:
    """`select` for `COPY --from=<stage>`: paths in that stage's file tree (no wildcards)."""

    def select(pattern: str) -> list[Source]:
        if any(c in pattern for c in "*?["):
            raise ins.error(f"--from={stage}: wildcards are not supported in {pattern!r}")
        rel = view.resolve(posixpath.normpath("/" + pattern).lstrip("/"))
        st = view.lstat(rel)
        if st is None:
            raise ins.error(f"--from={stage}: {pattern!r} does not exist in that stage")
        if not stat.S_ISDIR(st.st_mode):
            return [Source(rel=rel, under="", st=st)]
        out: list[Source] = []
        todo = [""]
        while todo:
            under = todo.pop(0)
            base = f"{rel}/{under}".strip("/") if under else rel
            for name in view.listdir(base):
                child_under = f"{under}/{name}" if under else name
                child_rel = f"{base}/{name}" if base else name
                child = view.lstat(child_rel)
                if child is None:
                    continue
                out.append(Source(rel=child_rel, under=child_under, st=child))
                if stat.S_ISDIR(child.st_mode):
                    todo.append(child_under)
        return sorted(out, key=lambda s: s.under.split("/"))

    return select


def view_path(view: RootView) -> Callable[[Source], Path]:
    def open_source(src: Source) -> Path:
        path = view.real_path(src.rel)
        if path is None:
            raise BuildError(f"{src.rel} vanished from the stage it is copied from")
        return path

    return open_source
