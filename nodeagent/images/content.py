"""The node's content store: blobs (manifests, configs, compressed layers) by sha256 digest.

Layout: <state-dir>/images/blobs/sha256/<hex>, written through <state-dir>/images/blobs/ingest/.

Invariants:
- A blob file under sha256/ always holds exactly the bytes its name says: writers stream into
  an ingest file while hashing, and only a verified file is renamed into place (atomic on one
  file system). A crash leaves at most stray ingest files, removed at the next start.
- Blobs are immutable once committed; removal is the garbage collector's job.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from pilothouse.oci import DigestMismatch, digest_hex


class _HashingWriter:
    """A file-like sink that hashes what passes through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()


class ContentStore:
    def __init__(self, images_dir: Path) -> None:
        self.root = images_dir / "blobs" / "sha256"
        self.ingest = images_dir / "blobs" / "ingest"
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.ingest, ignore_errors=True)  # leftovers of a crash
        self.ingest.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        """A small blob (manifest, config), re-verified since it is about to be trusted."""
        data = self.path(digest).read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"stored blob {digest} is corrupt (its content changed on disk)")
        return data

    def size(self, digest: str) -> int:
        """Bytes the blob takes on disk (allocated blocks; 0 when absent)."""
        try:
            return self.path(digest).stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def digests(self) -> set[str]:
        return {f"sha256:{p.name}" for p in self.root.iterdir() if len(p.name) == 64}

    async def write(self, digest: str, fill: Callable[[IO[bytes]], Awaitable[None]]) -> Path:
        """Commit the blob `fill` writes into the sink it is given, if it hashes to `digest`."""
        final = self.path(digest)
        tmp = self.ingest / f"{digest_hex(digest)}-{uuid.uuid4().hex[:8]}"
        try:
            with tmp.open("wb") as handle:
                sink = _HashingWriter(handle)
                await fill(sink)  # type: ignore[arg-type]
                handle.flush()
                os.fsync(handle.fileno())
            got = "sha256:" + sink.hasher.hexdigest()
            if got != digest:
                raise DigestMismatch(
                    f"blob {digest} arrived with digest {got}: corrupted or tampered; refused"
                )
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    def put(self, digest: str, data: bytes) -> Path:
        """Commit an in-memory blob (a manifest) after verifying it."""
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} does not match its content; refused")
        final = self.path(digest)
        if not final.exists():
            tmp = self.ingest / f"{digest_hex(digest)}-{uuid.uuid4().hex[:8]}"
            tmp.write_bytes(data)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        return final

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
