"""Getting a built image out of the build store: push it to a registry, or write a layout.

`push` sends the image's blobs (those the registry lacks, asked with HEAD) and then its
manifest, under the reference's tag; registries, mirrors and credentials come from a
registries.yaml as the agents use (plain http is allowed for loopback registries, or for a
host the config marks `insecure`). `write_layout` writes the image alone as an OCI image
layout directory (or a `.tar` of one) that skopeo, umoci and `pilothouse image push` read.

Invariant: the digest pushed or written is the digest the build reported; nothing is
re-encoded on the way out.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import structlog

from pilothouse.cli.build import BuildError
from pilothouse.cli.build.store import BuildStore
from pilothouse.oci import OCIError, reference
from pilothouse.oci import manifest as m
from pilothouse.oci.archive import write_oci_archive
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.oci.registry import RegistryClient

log = structlog.get_logger(__name__)


async def push(
    store: BuildStore, name: str, digest: str, *, registries: RegistriesConfig | None = None
) -> str:
    """Push the stored image `digest` as `name`; return the manifest digest the registry got."""
    ref = reference.parse(name)
    raw = store.read_blob(digest)
    manifest = m.parse_manifest(raw)
    try:
        repo = RegistryClient(registries).push_repository(ref)
        for desc in (manifest.config, *manifest.layers):
            if await repo.has_blob(desc.digest):
                continue
            path = store.blob_path(desc.digest)
            await repo.put_blob(desc, lambda p=path: p.open("rb"))  # type: ignore[misc]
            log.info("build.blob_pushed", digest=desc.digest, size=desc.size, image=str(ref))
        pushed = await repo.put_manifest(ref.object, raw, manifest.media_type)
    except OCIError as exc:
        raise BuildError(f"cannot push {ref}: {exc}") from None
    log.info("build.pushed", image=str(ref), digest=pushed)
    return pushed


def write_layout(store: BuildStore, digest: str, out: Path, *, name: str = "") -> Path:
    """Write the image as an OCI layout dir at `out` (or an OCI archive if it ends in .tar)."""
    raw = store.read_blob(digest)
    manifest = m.parse_manifest(raw)
    blobs = [digest, manifest.config.digest, *(d.digest for d in manifest.layers)]
    desc = m.Descriptor(m.OCI_MANIFEST, digest, len(raw))
    full = reference.normalize(name) if name else ""
    if out.suffix == ".tar":
        data = {d: store.read_blob(d) for d in blobs}
        return write_oci_archive(out, blobs=data, images=[(desc, full or "image:latest")])
    target = out / "blobs" / "sha256"
    target.mkdir(parents=True, exist_ok=True)
    for blob in blobs:
        dest = target / blob.split(":", 1)[1]
        if dest.exists():
            continue
        try:
            os.link(store.blob_path(blob), dest)
        except OSError:
            shutil.copyfile(store.blob_path(blob), dest)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entry = desc.to_json()
    if full:
        tag = reference.parse(full).tag or "latest"
        entry["annotations"] = {m.REF_NAME: tag, m.CONTAINERD_NAME: full}
    index = {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [entry]}
    (out / "index.json").write_text(json.dumps(index, sort_keys=True, indent=1))
    if not out.is_dir():
        raise BuildError(f"could not write {out}")
    return out
