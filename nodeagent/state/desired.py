"""The persisted desired pod set (`<state-dir>/desired.json`).

Invariants: `load()` returns exactly the pods of the last completed `save()`, or None when the
set is unknown: no file (nothing was saved, or it was lost) or an unreadable one, which is
quarantined (`nodeagent.state.quarantine`) and never a crash loop of the agent. Unknown is not
empty: the caller keeps what runs and waits for the control plane to push the set again.
Each pod is converted to JSON once while it stays in the set: a save reuses the text of every
pod whose content (its wire bytes) is unchanged since the last save.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from google.protobuf import json_format

from nodeagent.state.quarantine import quarantine
from pilothouse.v1 import objects_pb2

# Bad JSON or UTF-8 (ValueError), a JSON of another shape (LookupError, TypeError,
# AttributeError, ParseError), a file that cannot be read (OSError).
_UNREADABLE = (OSError, ValueError, LookupError, TypeError, AttributeError, json_format.ParseError)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new bytes, nothing else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DesiredPods:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "desired.json"
        self._texts: dict[bytes, str] = {}  # a pod's wire bytes -> its JSON text (last save)

    def save(self, pods: list[objects_pb2.Pod]) -> None:
        texts: dict[bytes, str] = {}
        parts = []
        for pod in pods:
            wire = pod.SerializeToString(deterministic=True)
            text = texts.get(wire) or self._texts.get(wire)
            if text is None:
                text = json.dumps(json_format.MessageToDict(pod), indent=1, sort_keys=True)
            texts[wire] = text
            parts.append(text)
        write_atomically(self.path, ('{"pods": [\n' + ",\n".join(parts) + "\n]}\n").encode())
        self._texts = texts  # only the pods of the current set stay

    def load(self) -> list[objects_pb2.Pod] | None:
        """The last saved set; None when it is unknown (missing, or unreadable: quarantined)."""
        try:
            doc = json.loads(self.path.read_bytes())
            return [json_format.ParseDict(p, objects_pb2.Pod()) for p in doc["pods"]]
        except FileNotFoundError:
            return None
        except _UNREADABLE as exc:
            quarantine(
                self.path,
                error=exc,
                instead="the running containers are kept as they are until the control plane "
                "pushes the node's pods again",
            )
            return None
