"""The layer store: each layer unpacked once under <state-dir>/images/layers/<diff-id hex>.

A layer directory is an overlayfs lower dir shared read-only by every container of every image
that has the layer; containers write only to their own upper dirs.

Invariants:
- A directory named by a diff id holds exactly that layer: unpacking goes to a temp dir, the
  uncompressed stream's digest is checked against the image config's diff id, and only then is
  the dir renamed into place. A refused or crashed unpack leaves only a temp dir, removed at
  the next start.
- Concurrent requests for one layer unpack it once (a lock per diff id).
- A layer's size (allocated blocks, hard links counted once) is measured once per process:
  a layer directory never changes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import structlog

from pilothouse.oci import digest_hex
from pilothouse.oci.unpack import LayerError, unpack_layer

log = structlog.get_logger(__name__)


class LayerStore:
    def __init__(self, images_dir: Path) -> None:
        self.root = images_dir / "layers"
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self._locks: dict[str, asyncio.Lock] = {}
        self._sizes: dict[str, int] = {}  # diff id -> bytes on disk

    def path(self, diff_id: str) -> Path:
        return self.root / digest_hex(diff_id)

    def has(self, diff_id: str) -> bool:
        return self.path(diff_id).is_dir()

    def size(self, diff_id: str) -> int:
        """Bytes the unpacked layer takes on disk (0 when absent)."""
        found = self._sizes.get(diff_id)
        if found is None:
            path = self.path(diff_id)
            if not path.is_dir():
                return 0
            found = self._sizes[diff_id] = _disk_usage(path)
        return found

    def diff_ids(self) -> set[str]:
        return {f"sha256:{p.name}" for p in self.root.iterdir() if len(p.name) == 64}

    async def ensure(self, diff_id: str, blob: Path) -> Path:
        """The layer's directory, unpacking the compressed blob first if needed."""
        final = self.path(diff_id)
        if final.is_dir():
            return final
        lock = self._locks.setdefault(diff_id, asyncio.Lock())
        async with lock:
            if not final.is_dir():
                await asyncio.to_thread(self._unpack, diff_id, blob, final)
        self._locks.pop(diff_id, None)
        return final

    def _unpack(self, diff_id: str, blob: Path, final: Path) -> None:
        tmp = self.root / f".tmp-{digest_hex(diff_id)[:16]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(mode=0o755)
        try:
            with blob.open("rb") as handle:
                result = unpack_layer(handle, tmp)
            if result.diff_id != diff_id:
                raise LayerError(
                    f"layer {blob.name[:12]} unpacks to diff id {result.diff_id}, but the image "
                    f"config says {diff_id}: refusing the image"
                )
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
            log.info(
                "layer.unpacked", diff_id=diff_id, size=result.size, skipped=len(result.skipped)
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, diff_id: str) -> None:
        path = self.path(diff_id)
        if path.is_dir():
            # Rename first so a half-removed layer is never mistaken for a whole one.
            doomed = self.root / f".tmp-rm-{uuid.uuid4().hex[:8]}"
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        self._sizes.pop(diff_id, None)


def _disk_usage(root: Path) -> int:
    """Allocated bytes under `root` (as `du` counts them), without following symlinks."""
    seen: set[tuple[int, int]] = set()
    total = root.lstat().st_blocks * 512
    todo = [root]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    todo.append(Path(entry.path))
    return total
