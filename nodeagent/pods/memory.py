"""What a pod worker keeps on disk for the agent that follows it.

Role: the facts the runtime cannot tell a restarted agent, in the pod's directory: each
container's last reported started/ready (`<container>/probes.json`, for one attempt), the
pod conditions' transition times (`conditions.json`) and, once the pod was evicted, why
(`evicted.json`: an evicted pod stays Failed, its containers never run again).

Invariants:
- A file is replaced whole (written aside, then renamed), so a reader sees the old or the new
  contents, never a mix; a failed write is logged and never stops the pod.
- Remembered probes apply only to the attempt they were written for (same container id).
- Anything unreadable reads as nothing remembered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nodeagent.pods import specs
from pilothouse.v1 import objects_pb2


class PodMemory:
    """The on-disk memory of one pod, under the agent's state directory."""

    def __init__(self, *, state_dir: Path, pod: objects_pb2.Pod, log: Any) -> None:
        self._state_dir = state_dir
        self._pod = pod
        self._log = log

    @property
    def _dir(self) -> Path:
        return specs.pod_dir(self._state_dir, self._pod)

    def conditions(self) -> object:
        """The conditions snapshot last saved (None if none)."""
        return _read_json(self._dir / "conditions.json")

    def save_conditions(self, snapshot: object) -> None:
        self._write_json(self._dir / "conditions.json", snapshot)

    def evicted(self) -> str | None:
        """The eviction's message if the pod was evicted, else None."""
        state = _read_json(self._dir / "evicted.json")
        return str(state.get("message", "")) if isinstance(state, dict) else None

    def save_evicted(self, message: str) -> None:
        self._write_json(self._dir / "evicted.json", {"message": message})

    def probes(self, name: str, container_id: str) -> tuple[bool, bool] | None:
        """(started, ready) last reported for this attempt by any agent, if any."""
        state = _read_json(self._dir / name / "probes.json")
        if not isinstance(state, dict) or state.get("container_id") != container_id:
            return None
        return bool(state.get("started")), bool(state.get("ready"))

    def save_probes(self, name: str, *, container_id: str, started: bool, ready: bool) -> None:
        state = {"container_id": container_id, "started": started, "ready": ready}
        self._write_json(self._dir / name / "probes.json", state)

    def _write_json(self, path: Path, data: object) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError as exc:
            self._log.warning("pod.state_not_saved", path=str(path), error=str(exc))


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
