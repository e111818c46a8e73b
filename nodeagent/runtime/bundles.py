"""Making a container's OCI bundle and spawning its monitor, for the runc runtime.

Role: `RuncRuntime.create`'s work once the bundle directory exists: `meta.json` (labels, log
path, cgroup path, whether the rootfs is mounted, the monitor's uuid), the rootfs (assembled
from mounts under `rootfs/`, or the given path), `config.json` (`ocispec.build`, with
`meta.json` as an annotation runc keeps a copy of), Secret values staged in memory
(`secretenv`), then `conmon`, which runs `runc create`.

Invariants:
- `meta.json` is written before any mount, so a crash mid-mount still unmounts on delete.
- Secret values never reach the disk: `config.json` holds them redacted once runc has read
  them, whether the spawn succeeded or not.
- The bundle stays one directory and two files (three with an assembled rootfs): each file
  costs about a millisecond on a VM's disk.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from nodeagent.runtime import (
    ContainerSpec,
    ContainerState,
    RuntimeError_,
    Status,
    conmon,
    mounts,
    ocispec,
    records,
    secretenv,
)

log = structlog.get_logger("nodeagent.runtime.runc")


async def create(
    spec: ContainerSpec,
    cdir: Path,
    *,
    settings: ocispec.NodeSettings,
    conmon_binary: str,
    runc_binary: str,
    runc_root: Path,
    exit_dir: Path,
    socket_dir: Path,
    log_size_max: int,
) -> ContainerState:
    """Fill the (new, empty) bundle `cdir` and spawn the container's monitor, which runs
    `runc create`; the caller deletes the container when this fails."""
    if not spec.rootfs_mounts and not spec.rootfs:
        raise RuntimeError_(f'container "{spec.id}" has no rootfs (neither a path nor mounts)')
    # Every file and directory made here costs about a millisecond on a VM's disk: keep
    # the bundle to one directory and two files (three with an assembled rootfs).
    log_path = Path(spec.log_path) if spec.log_path else cdir / "container.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "id": spec.id,
        "labels": dict(spec.labels),
        "log_path": str(log_path),
        "cgroups_path": ocispec.cgroups_path(spec.id, settings),
        "created_at": datetime.now(UTC).isoformat(),
        # Recorded before mounting: a crash mid-mount still unmounts on delete.
        "rootfs_mounted": bool(spec.rootfs_mounts),
        "uuid": str(uuid.uuid4()),
    }
    records.write_json(cdir / "meta.json", meta)
    if spec.rootfs_mounts:
        root = cdir / "rootfs"
        root.mkdir()
        mounts.perform(spec.rootfs_mounts, root=root)
    else:
        root = _real_path(spec.rootfs)
    try:
        config = ocispec.build(spec, settings=settings, rootfs=str(root))
    except ValueError as err:
        raise RuntimeError_(str(err)) from None
    # A second copy of meta.json, where runc keeps one too (see `RuncRuntime._recover_meta`).
    config["annotations"] = {**config.get("annotations", {}), **records.meta_annotations(meta)}
    # Values from Secrets stay in memory: runc reads them from a tmpfs copy (secretenv).
    memory = secretenv.stage(cdir, config, uuid=meta["uuid"]) if spec.secret_env else None
    if memory is None:
        records.write_json(cdir / "config.json", config)
    try:
        pid = await conmon.spawn(
            conmon=conmon_binary,
            runc=runc_binary,
            runc_root=runc_root,
            container_id=spec.id,
            container_uuid=meta["uuid"],
            bundle=cdir,
            log_path=log_path,
            log_size_max=log_size_max,
            exit_dir=exit_dir,
            socket_dir=socket_dir,
        )
    finally:
        if memory is not None:
            redacted = secretenv.redacted(config, spec.secret_env)
            records.write_json(cdir / "config.json", redacted)
            secretenv.forget(memory)
    log.debug("container.created", container=spec.id, pid=pid)
    return ContainerState(id=spec.id, status=Status.CREATED, pid=pid, labels=dict(spec.labels))


def _real_path(path: str) -> Path:
    return Path(os.path.realpath(path))
