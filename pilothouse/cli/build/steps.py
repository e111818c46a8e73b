"""RUN steps, and the cache keys of every layer step (`chain_key`).

A RUN step has two halves. `run_plan` is pure and cheap: it computes the step's cache key from
the parent's `fs_key`, the command, its environment (Env and ARGs), user, working directory and
network. Only on a cache miss does `run_step` run the command in runc (`runstep`) and turn what
it changed into a layer. COPY and ADD are in `copystep`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from pilothouse.cli.build import layertar
from pilothouse.cli.build.containerfile import Instruction
from pilothouse.cli.build.imageconfig import Layer, State
from pilothouse.cli.build.rootfs import RootView
from pilothouse.cli.build.runstep import MOUNT_POINTS, RuncDriver, StepSpec
from pilothouse.cli.build.store import BuildStore, CacheEntry
from pilothouse.oci import manifest as m

_LONE_HEREDOC = re.compile(r"<<-?(['\"]?)\w+\1")


def chain_key(parent: str, *parts: object) -> str:
    """The cache key of a step: sha256 over the parent's key and what the step does."""
    return hashlib.sha256(json.dumps([parent, *parts], sort_keys=True).encode()).hexdigest()


# -- RUN --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunPlan:
    key: str
    argv: tuple[str, ...]
    env: tuple[str, ...]
    user: str
    cwd: str
    host_network: bool


def run_plan(ins: Instruction, state: State, *, host_network: bool) -> RunPlan:
    network = ins.flags.get("network", "default")
    if network == "host" and not host_network:
        raise ins.error("--network=host needs `pilothouse build --network host`")
    use_host = host_network and network != "none"
    if ins.exec_form is not None:
        argv = ins.exec_form
        if not argv:
            raise ins.error("the JSON form is empty: nothing to run")
    elif ins.heredocs and _LONE_HEREDOC.fullmatch(ins.args.strip()):
        argv = (*state.shell, ins.heredocs[0].body)  # `RUN <<EOF`: the body is the script
    elif ins.heredocs:
        script = ins.args + "\n" + "".join(f"{h.body}{h.name}\n" for h in ins.heredocs)
        argv = (*state.shell, script)
    else:
        argv = (*state.shell, ins.args)
    env = tuple(state.run_env())
    user = str(state.config.get("User") or "")
    cwd = str(state.config.get("WorkingDir") or "/")
    key = chain_key(state.fs_key, "RUN", list(argv), list(env), user, cwd, use_host)
    return RunPlan(key, tuple(argv), env, user, cwd, use_host)


def lookup_user(view: RootView, spec: str, *, where: Instruction) -> tuple[int, int]:
    """uid and gid for `user[:group]` (names from the image's /etc/passwd and /etc/group)."""
    user, _, group = spec.partition(":")
    uid: int | None = int(user) if user.isdigit() else None
    gid: int | None = int(group) if group.isdigit() else None
    if uid is None or (uid is not None and not group):
        passwd = (view.read("etc/passwd") or b"").decode("utf-8", "replace")
        for line in passwd.splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and (fields[0] == user or (uid is not None and fields[2] == user)):
                uid = int(fields[2]) if uid is None else uid
                gid = int(fields[3]) if gid is None and not group else gid
                break
        if uid is None:
            raise where.error(f"user {user!r} is not in the image's /etc/passwd")
    if gid is None and group:
        groups = (view.read("etc/group") or b"").decode("utf-8", "replace")
        for line in groups.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == group:
                gid = int(fields[2])
                break
        if gid is None:
            raise where.error(f"group {group!r} is not in the image's /etc/group")
    return uid, gid if gid is not None else uid


async def run_step(
    ins: Instruction, plan: RunPlan, *, lowers: list[Path], store: BuildStore, driver: RuncDriver
) -> CacheEntry:
    """Run the command; turn what it changed into a layer (or none); the entry to cache."""
    view = RootView(lowers)
    uid, gid = lookup_user(view, plan.user, where=ins) if plan.user else (0, 0)
    env = list(plan.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=/root" if uid == 0 else "HOME=/")
    upper = store.layers / f".tmp-{uuid.uuid4().hex[:12]}"
    upper.mkdir(mode=0o755)
    try:
        spec = StepSpec(
            args=plan.argv,
            env=tuple(env),
            cwd=plan.cwd,
            uid=uid,
            gid=gid,
            host_network=plan.host_network,
        )
        result = await driver.run(spec, lowers=lowers, upper=upper)
        if result.exit_code != 0 or result.runtime_error:
            shown = " ".join(ins.original.split())[:120]
            why = f"; runc: {result.runtime_error}" if result.runtime_error else ""
            tail = "\n".join(f"  | {line}" for line in result.tail) or "  (no output)"
            raise ins.error(
                f"`{shown}` failed with exit code {result.exit_code}{why}; last output:\n{tail}"
            )
        _drop_mount_points(upper, view)
        entries = layertar.diff_upper(upper)
        if not entries:
            shutil.rmtree(upper, ignore_errors=True)
            return CacheEntry()
        _zero_times(upper)
        tmp = store.temp_blob()
        written = layertar.write_layer(entries, tmp)
        store.commit_blob(tmp, written.digest)
        store.adopt_layer(upper, written.diff_id, size=written.raw_size)
        return CacheEntry(written.diff_id, written.digest, written.size)
    except BaseException:
        shutil.rmtree(upper, ignore_errors=True)
        raise


def _drop_mount_points(upper: Path, view: RootView) -> None:
    """Remove mount points runc made in the rootfs (absent before, empty now)."""
    for rel in MOUNT_POINTS:
        path = upper / rel
        while rel and view.lstat(rel) is None and os.path.lexists(path):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and not os.listdir(path):
                os.rmdir(path)
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                path.unlink()
            else:
                break
            rel = posixpath.dirname(rel)
            path = upper / rel if rel else upper


def _zero_times(upper: Path) -> None:
    """Fixed mtimes in the adopted layer dir too, so later steps see what the tar says."""
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (0, 0), follow_symlinks=False)


def as_layer(entry: CacheEntry) -> Layer | None:
    if entry.empty:
        return None
    return Layer(entry.diff_id, entry.digest, entry.size, m.OCI_LAYER_GZIP)
