"""Image archives: read OCI image-layout tars and `docker save` tars; write OCI layout tars.

An archive holds one or more images, each with the names it was saved under
(`org.opencontainers.image.ref.name` / `io.containerd.image.name` annotations in an OCI
layout, `RepoTags` in a docker-save archive). A `docker save` image has no manifest of its own,
so one is synthesized (OCI media types, uncompressed layers) whose digests are computed here.

Invariants:
- `copy_blob` verifies the digest while streaming; a mismatch raises `DigestMismatch`, and the
  caller discards what it wrote.
- Multi-platform images in a layout are resolved to linux/amd64 at open time.
- Written archives are deterministic: same blobs and names, same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pilothouse.oci import DigestMismatch, OCIError, digest_hex, reference, sha256_digest
from pilothouse.oci import manifest as m

_CHUNK = 1 << 20


def _clean(name: str) -> str:
    """A member name without a leading "./" or "/" (how tools differ in writing them)."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


class ArchiveError(OCIError):
    """The file is not an image archive we can read, or it is inconsistent."""


@dataclass(frozen=True, slots=True)
class ArchivedImage:
    names: tuple[str, ...]  # normalized references it was saved under (may be empty)
    digest: str  # manifest digest
    media_type: str
    manifest: bytes


def _name_from_annotations(annotations: dict[str, str]) -> str | None:
    for key in (m.CONTAINERD_NAME, m.REF_NAME):
        value = annotations.get(key, "")
        # A bare ref.name ("stable") is a tag with no repository: it cannot name an image.
        if value and ("/" in value or ":" in value or "@" in value):
            try:
                return reference.normalize(value)
            except reference.InvalidReference:
                continue
    return None


class ImageArchive:
    """An opened archive. Use as a context manager; blobs are read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError) as exc:
            raise ArchiveError(f"{path}: not a readable tar archive: {exc}") from exc
        self._members: dict[str, tarfile.TarInfo] = {}
        self._blob_members: dict[str, str] = {}  # digest -> member name
        self._memory: dict[str, bytes] = {}  # synthesized blobs (docker save manifests)
        self.images: tuple[ArchivedImage, ...] = ()
        try:
            for info in self._tar.getmembers():
                self._members[_clean(info.name)] = info
            if "index.json" in self._members:
                self.images = tuple(self._read_layout())
            elif "manifest.json" in self._members:
                self.images = tuple(self._read_docker_save())
            else:
                raise ArchiveError(
                    f"{path}: neither an OCI image layout (index.json) nor a docker-save "
                    "archive (manifest.json)"
                )
        except BaseException:
            self._tar.close()
            raise

    def __enter__(self) -> ImageArchive:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._tar.close()

    # -- reading members ------------------------------------------------------------------
    def _member_file(self, name: str) -> IO[bytes]:
        info = self._members.get(_clean(name))
        if info is None or not info.isfile():
            raise ArchiveError(f"{self.path}: member {name!r} is missing")
        handle = self._tar.extractfile(info)
        if handle is None:
            raise ArchiveError(f"{self.path}: member {name!r} is not a regular file")
        return handle

    def _member_bytes(self, name: str, *, limit: int = 64 << 20) -> bytes:
        with self._member_file(name) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{self.path}: member {name!r} is too large for a JSON document")
        return data

    def _blob_name(self, digest: str) -> str:
        if digest in self._blob_members:
            return self._blob_members[digest]
        return f"blobs/sha256/{digest_hex(digest)}"

    def has_blob(self, digest: str) -> bool:
        return digest in self._memory or self._blob_name(digest) in self._members

    def blob_size(self, digest: str) -> int:
        if digest in self._memory:
            return len(self._memory[digest])
        info = self._members.get(self._blob_name(digest))
        if info is None:
            raise ArchiveError(f"{self.path}: blob {digest} is missing")
        return info.size

    def read_blob(self, digest: str) -> bytes:
        """A small blob (manifest, config), verified."""
        data = self._memory.get(digest)
        if data is None:
            data = self._member_bytes(self._blob_name(digest))
        if sha256_digest(data) != digest:
            raise DigestMismatch(f"{self.path}: blob {digest} does not match its digest")
        return data

    def open_blob(self, digest: str) -> IO[bytes]:
        """A reader of the blob's bytes (not verified: for uploads, which the registry checks)."""
        if digest in self._memory:
            return io.BytesIO(self._memory[digest])
        return self._member_file(self._blob_name(digest))

    def copy_blob(self, digest: str, dest: IO[bytes]) -> None:
        """Stream a blob into `dest`, verifying its digest (`DigestMismatch` if it differs)."""
        if digest in self._memory:
            dest.write(self.read_blob(digest))
            return
        hasher = hashlib.sha256()
        with self._member_file(self._blob_name(digest)) as src:
            while chunk := src.read(_CHUNK):
                hasher.update(chunk)
                dest.write(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            raise DigestMismatch(f"{self.path}: blob {digest} does not match its digest")

    # -- OCI image layout -----------------------------------------------------------------
    def _read_layout(self) -> Iterable[ArchivedImage]:
        index = m.parse_index(self._member_bytes("index.json"))
        for entry in index.manifests:
            names = (_name_from_annotations(entry.annotations),)
            yield self._resolve(entry, tuple(n for n in names if n))

    def _resolve(self, entry: m.Descriptor, names: tuple[str, ...]) -> ArchivedImage:
        raw = self.read_blob(entry.digest)
        media_type = m.media_type_of(raw, entry.media_type)
        if media_type in m.INDEX_TYPES:
            chosen = m.select_platform(m.parse_index(raw))
            return self._resolve(chosen, names)
        m.parse_manifest(raw)  # validates the shape
        return ArchivedImage(names=names, digest=entry.digest, media_type=media_type, manifest=raw)

    # -- docker save ----------------------------------------------------------------------
    def _read_docker_save(self) -> Iterable[ArchivedImage]:
        try:
            entries = json.loads(self._member_bytes("manifest.json"))
        except ValueError as exc:
            raise ArchiveError(f"{self.path}: manifest.json is not valid JSON: {exc}") from exc
        if not isinstance(entries, list):
            raise ArchiveError(f"{self.path}: manifest.json is not a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "Config" not in entry or "Layers" not in entry:
                raise ArchiveError(f"{self.path}: manifest.json[{i}] lacks Config or Layers")
            config = self._member_bytes(entry["Config"])
            config_digest = sha256_digest(config)
            self._memory[config_digest] = config
            layers = [self._docker_layer(name) for name in entry["Layers"]]
            doc: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": m.OCI_MANIFEST,
                "config": m.Descriptor(m.OCI_CONFIG, config_digest, len(config)).to_json(),
                "layers": [d.to_json() for d in layers],
            }
            raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            digest = sha256_digest(raw)
            self._memory[digest] = raw
            names = []
            for tag in entry.get("RepoTags") or []:
                try:
                    names.append(reference.normalize(tag))
                except reference.InvalidReference:
                    continue
            yield ArchivedImage(tuple(names), digest, m.OCI_MANIFEST, raw)

    def _docker_layer(self, name: str) -> m.Descriptor:
        hasher = hashlib.sha256()
        size = 0
        head = b""
        with self._member_file(name) as src:
            while chunk := src.read(_CHUNK):
                if not head:
                    head = chunk[:4]
                hasher.update(chunk)
                size += len(chunk)
        digest = "sha256:" + hasher.hexdigest()
        self._blob_members[digest] = _clean(name)
        media_type = m.OCI_LAYER_GZIP if head.startswith(b"\x1f\x8b") else m.OCI_LAYER
        return m.Descriptor(media_type, digest, size)


# -- writing ----------------------------------------------------------------------------
def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _tar_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def write_oci_archive(
    out: Path, *, blobs: dict[str, bytes], images: list[tuple[m.Descriptor, str]]
) -> Path:
    """Write an OCI image-layout tar holding `blobs`, naming each (manifest, reference) pair.

    Each manifest descriptor is annotated with the full normalized reference (both
    `io.containerd.image.name` and `org.opencontainers.image.ref.name`), so importers on
    any tool recover the name.
    """
    for digest, data in blobs.items():
        if sha256_digest(data) != digest:
            raise DigestMismatch(f"blob {digest} does not match its digest")
    entries = []
    for desc, name in images:
        full = reference.normalize(name)
        entry = desc.to_json()
        entry["annotations"] = {m.CONTAINERD_NAME: full, m.REF_NAME: full}
        entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": entries}
    tmp = out.with_name(f".{out.name}.tmp")  # dot-named: import dirs ignore it
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _tar_add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _tar_add(tar, "index.json", json.dumps(index, sort_keys=True, indent=1).encode())
        _tar_dir(tar, "blobs")
        _tar_dir(tar, "blobs/sha256")
        for digest in sorted(blobs):
            _tar_add(tar, f"blobs/sha256/{digest_hex(digest)}", blobs[digest])
    tmp.replace(out)
    return out
