"""The build store: named images, blobs, unpacked layers and the layer cache, under one root.

Layout (default root `/var/lib/pilothouse/build` for root, `~/.pilothouse/build` otherwise):

    oci/                 an OCI image layout (oci-layout, index.json, blobs/sha256/…): the local
                         store of named images; `skopeo inspect oci:<root>/oci:<name>` reads it
    layers/<hex>/        a layer unpacked for overlayfs (named by diff id), <hex>.size its bytes
    cache/<key>.json     a layer-cache entry: chain key -> the layer a step made (mtime = last use)
    stat-cache.json      content hashes of context files by (inode, size, mtime, ctime)
    run/, runc/          RUN steps' bundles and runc's state (empty between builds)
    lock                 held (flock) for a whole build or prune: one writer at a time

Invariants:
- a blob file is named by the sha256 of its bytes (written to a temp name, renamed when whole);
- a layer dir is renamed into place only when completely unpacked;
- `prune` never removes a blob or layer of a named image; with a size limit it removes cache
  entries least recently used first, then whatever nothing references any more.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from pilothouse.cli.build import BuildError
from pilothouse.oci import digest_hex, reference, sha256_digest
from pilothouse.oci import manifest as m
from pilothouse.oci.unpack import LayerError, unpack_layer

log = structlog.get_logger(__name__)

DEFAULT_CACHE_LIMIT = 10 << 30


def default_root() -> Path:
    if env := os.environ.get("PILOTHOUSE_BUILD_ROOT"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/pilothouse/build")
    return Path.home() / ".pilothouse" / "build"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What a layer step made: the layer (or none, for a step that changed no file)."""

    diff_id: str = ""
    digest: str = ""
    size: int = 0

    @property
    def empty(self) -> bool:
        return not self.digest


@dataclass(frozen=True, slots=True)
class Usage:
    blobs: int
    layers: int
    cache_entries: int

    @property
    def total(self) -> int:
        return self.blobs + self.layers


@dataclass(frozen=True, slots=True)
class Pruned:
    cache_entries: int
    blobs: int
    layers: int
    freed: int
    usage: Usage


class BuildStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.oci = root / "oci"
        self.blobs = self.oci / "blobs" / "sha256"
        self.layers = root / "layers"
        self.cache = root / "cache"
        self.run_dir = root / "run"
        self.runc_root = root / "runc"
        self.stat_cache = root / "stat-cache.json"
        for d in (self.blobs, self.layers, self.cache, self.run_dir, self.runc_root):
            d.mkdir(parents=True, exist_ok=True)
        layout = self.oci / "oci-layout"
        if not layout.exists():
            layout.write_text('{"imageLayoutVersion":"1.0.0"}')
        if not (self.oci / "index.json").exists():
            self._write_index([])

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with (self.root / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                for stale in (*self.layers.glob(".tmp-*"), *self.blobs.glob(".tmp-*")):
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                    else:
                        stale.unlink(missing_ok=True)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- blobs --------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def temp_blob(self) -> Path:
        return self.blobs / f".tmp-{uuid.uuid4().hex}"

    def commit_blob(self, tmp: Path, digest: str) -> Path:
        final = self.blob_path(digest)
        if final.exists():
            tmp.unlink()
        else:
            tmp.rename(final)
        return final

    def put_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if not self.has_blob(digest):
            tmp = self.temp_blob()
            tmp.write_bytes(data)
            self.commit_blob(tmp, digest)
        return digest

    def read_blob(self, digest: str) -> bytes:
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise BuildError(f"blob {digest} is missing from the build store {self.root}") from None
        if sha256_digest(data) != digest:
            raise BuildError(f"blob {digest} in the build store is corrupt; run --prune")
        return data

    # -- named images -------------------------------------------------------------------------
    def _read_index(self) -> list[dict[str, Any]]:
        data = json.loads((self.oci / "index.json").read_text())
        return list(data.get("manifests") or [])

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": manifests}
        tmp = self.oci / ".index.json.tmp"
        tmp.write_text(json.dumps(index, sort_keys=True, indent=1))
        tmp.replace(self.oci / "index.json")

    def tag(self, name: str, desc: m.Descriptor) -> None:
        """Name the manifest `desc` as `name` (normalized), replacing what it named before."""
        full = reference.normalize(name)
        entries = [e for e in self._read_index() if _entry_name(e) != full]
        entry = desc.to_json()
        entry["annotations"] = {m.REF_NAME: full, m.CONTAINERD_NAME: full}
        entries.append(entry)
        entries.sort(key=_entry_name)
        self._write_index(entries)

    def lookup(self, name: str) -> str | None:
        """The manifest digest named `name` in the store, or None."""
        full = reference.normalize(name)
        ref = reference.parse(full)
        for entry in self._read_index():
            if _entry_name(entry) == full or (ref.digest and entry.get("digest") == ref.digest):
                return str(entry["digest"])
        if ref.digest and self.has_blob(ref.digest):
            return ref.digest
        return None

    def names(self) -> dict[str, str]:
        return {_entry_name(e): str(e["digest"]) for e in self._read_index()}

    def image(self, digest: str) -> tuple[m.Manifest, dict[str, Any]]:
        """The manifest and the parsed config JSON of a stored image."""
        manifest = m.parse_manifest(self.read_blob(digest))
        config = json.loads(self.read_blob(manifest.config.digest))
        return manifest, config

    # -- unpacked layers ----------------------------------------------------------------------
    def layer_dir(self, diff_id: str) -> Path:
        return self.layers / digest_hex(diff_id)

    def ensure_layer(self, diff_id: str, blob_digest: str) -> Path:
        """The layer's unpacked dir, unpacking its blob first if needed."""
        final = self.layer_dir(diff_id)
        if final.is_dir():
            return final
        tmp = self.layers / f".tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(mode=0o755)
        try:
            # The base image's modes are kept (setuid too): a RUN step may copy a file up.
            with self.blob_path(blob_digest).open("rb") as blob:
                unpacked = unpack_layer(blob, tmp, keep_setid=True)
            if unpacked.diff_id != diff_id:
                raise BuildError(
                    f"layer blob {blob_digest} unpacks to diff id {unpacked.diff_id}, but the "
                    f"image config says {diff_id}: refusing the base image"
                )
            os.chmod(tmp, 0o755)
            self.adopt_layer(tmp, diff_id, size=unpacked.size)
        except LayerError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(f"base layer {blob_digest}: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def adopt_layer(self, directory: Path, diff_id: str, *, size: int) -> Path:
        """Move a complete layer dir into place (a RUN step's upper dir, an unpacked blob)."""
        final = self.layer_dir(diff_id)
        if final.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
        else:
            directory.rename(final)
            final.with_suffix(".size").write_text(str(size))
        return final

    # -- the layer cache ----------------------------------------------------------------------
    def cache_get(self, key: str) -> CacheEntry | None:
        path = self.cache / f"{key}.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        entry = CacheEntry(**data)
        if not entry.empty and not self.has_blob(entry.digest):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return entry

    def cache_put(self, key: str, entry: CacheEntry) -> None:
        path = self.cache / f"{key}.json"
        tmp = path.with_suffix(".tmp")
        data = {"diff_id": entry.diff_id, "digest": entry.digest, "size": entry.size}
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    # -- size and pruning ---------------------------------------------------------------------
    def usage(self) -> Usage:
        blobs = sum(p.stat().st_size for p in self.blobs.iterdir() if not p.name.startswith("."))
        layers = 0
        for p in self.layers.glob("*.size"):
            with contextlib.suppress(OSError, ValueError):
                layers += int(p.read_text())
        entries = len(list(self.cache.glob("*.json")))
        return Usage(blobs=blobs, layers=layers, cache_entries=entries)

    def prune(self, *, limit: int | None = None) -> Pruned:
        """Without a limit: drop the whole cache; with one, least recently used entries until
        the store fits. Then remove blobs and layer dirs that nothing references."""
        before = self.usage()
        entries = sorted(self.cache.glob("*.json"), key=lambda p: p.stat().st_mtime)
        dropped = 0
        if limit is None:
            for path in entries:
                path.unlink(missing_ok=True)
                dropped += 1
            blobs, layers = self._collect()
        else:
            blobs = layers = 0
            while True:
                b, lay = self._collect()
                blobs, layers = blobs + b, layers + lay
                if self.usage().total <= limit or not entries:
                    break
                entries.pop(0).unlink(missing_ok=True)
                dropped += 1
        after = self.usage()
        log.info("build.pruned", cache_entries=dropped, blobs=blobs, layers=layers)
        return Pruned(dropped, blobs, layers, max(0, before.total - after.total), after)

    def _collect(self) -> tuple[int, int]:
        keep_blobs: set[str] = set()
        keep_layers: set[str] = set()
        for entry in self._read_index():
            digest = str(entry["digest"])
            keep_blobs.add(digest)
            with contextlib.suppress(BuildError, m.ManifestError, ValueError):
                manifest, config = self.image(digest)
                keep_blobs.add(manifest.config.digest)
                keep_blobs.update(d.digest for d in manifest.layers)
                keep_layers.update((config.get("rootfs") or {}).get("diff_ids") or [])
        for path in self.cache.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                if data.get("digest"):
                    keep_blobs.add(data["digest"])
                    keep_layers.add(data["diff_id"])
        blobs = layers = 0
        for path in self.blobs.iterdir():
            if not path.name.startswith(".") and f"sha256:{path.name}" not in keep_blobs:
                path.unlink(missing_ok=True)
                blobs += 1
        for path in self.layers.iterdir():
            if path.is_dir() and f"sha256:{path.name}" not in keep_layers:
                shutil.rmtree(path, ignore_errors=True)
                path.with_suffix(".size").unlink(missing_ok=True)
                layers += 1
        return blobs, layers

    def enforce(self, limit: int) -> Pruned | None:
        """Prune to `limit` bytes if the store is over it (after each build)."""
        if self.usage().total <= limit:
            return None
        return self.prune(limit=limit)


def _entry_name(entry: dict[str, Any]) -> str:
    annotations = entry.get("annotations") or {}
    return str(annotations.get(m.CONTAINERD_NAME) or annotations.get(m.REF_NAME) or "")
