"""Recovery of a container's lost record: `meta.json` rebuilt from the copies kept elsewhere.

Role: the runc runtime calls `rebuild_meta` when a bundle's `meta.json` cannot be read (a torn
write after a power loss, a disk fault, a hand edit), so that `list` goes on and the container
is re-adopted instead of crashing the agent's start-up.

Sources, best first:
1. the copy in the bundle's `config.json` (`records.META_ANNOTATION`);
2. the copy in runc's own state (runc keeps a bundle's annotations);
3. what the live monitor's command line says (its uuid and log path) and the layout implies
   (the cgroup path, whether a rootfs is mounted), without labels: no pod claims such a
   container, so the agent stops and removes it, with everything it holds.

When runc's own state of a container is unreadable too, runc can neither signal nor delete
it: `runc_state_lost` says so, and `signal_without_runc` signals the container's process
directly (only while its monitor, whose child it is, is alive: a pid never reused).

Invariants: the unreadable file is quarantined, never deleted; the rebuilt record is written
atomically before it is returned, so the next read finds it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from nodeagent.runtime import conmon, processes, records
from nodeagent.state.quarantine import quarantine

log = structlog.get_logger(__name__)


def rebuild_meta(
    bundle: Path, *, container_id: str, runc_state: Path, cgroups_path: str, error: object
) -> dict[str, Any]:
    """The container's meta record, rebuilt from the best source left (see the module)."""
    meta = records.meta_from_config(bundle / "config.json")
    source = "its copy in config.json"
    if meta is None:
        meta = records.meta_from_runc_state(runc_state)
        source = "its copy in runc's state"
    if meta is None:
        args = conmon.monitor_args(bundle, container_id)
        log_path = args.get("log-path", "").removeprefix("k8s-file:")
        meta = {
            "id": container_id,
            "labels": {},
            "log_path": log_path or str(bundle / "container.log"),
            "cgroups_path": cgroups_path,
            "created_at": datetime.now(UTC).isoformat(),
            "rootfs_mounted": (bundle / "rootfs").is_dir(),
            "uuid": args.get("cuuid", ""),
        }
        source = "its monitor alone: no pod claims it, so it will be removed"
    quarantine(bundle / "meta.json", error=error, instead=f"the record is rebuilt from {source}")
    records.write_json(bundle / "meta.json", meta)
    log.warning("container.meta_recovered", container=container_id, source=source)
    return meta


def runc_state_lost(runc_state: Path) -> bool:
    """Is runc's state.json of a container there but unreadable?"""
    try:
        json.loads(runc_state.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return False


def signal_without_runc(bundle: Path, *, monitor: int | None, signal: int) -> bool:
    """Signal the container's process itself (runc cannot); False if there is none to signal."""
    pid = records.read_int(bundle / "container.pid")
    if monitor is None or not pid or not processes.alive(pid):
        return False
    log.warning("container.signalled_without_runc", bundle=str(bundle), pid=pid, signal=signal)
    processes.signal_quietly(pid, signal)
    return True
