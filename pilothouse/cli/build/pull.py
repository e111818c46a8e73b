"""Base images into the build store: from the store itself, an archive, or a registry.

`resolve(store, name, …)` is what FROM (and `COPY --from=<image>`) use: a name already in the
store is used as it is, with no network (as Docker does without `--pull`), so a rebuild needs no
registry; otherwise the image is pulled through `pilothouse.oci.registry` (mirrors and
credentials from a registries.yaml) and named in the store. `load(store, archive)` imports the
images of an OCI-layout or docker-save archive (`pilothouse image build-test` writes one).

Invariant: every blob written to the store was verified against its digest on the way in.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pilothouse.cli.build import BuildError
from pilothouse.cli.build.store import BuildStore
from pilothouse.oci import OCIError, reference
from pilothouse.oci import manifest as m
from pilothouse.oci.archive import ImageArchive

if TYPE_CHECKING:
    from pilothouse.oci.registries import RegistriesConfig

log = structlog.get_logger(__name__)


class MissingImage(BuildError):
    """A base image is neither in the build store nor in its registry."""


async def resolve(
    store: BuildStore,
    name: str,
    *,
    registries: RegistriesConfig | None = None,
    pull: bool = False,
) -> str:
    """The manifest digest of image `name`, pulling it into the store if it is not there."""
    try:
        ref = reference.parse(name)
    except reference.InvalidReference as exc:
        raise BuildError(str(exc)) from None
    if not pull:
        local = store.lookup(str(ref))
        if local is not None:
            return local
    from pilothouse.oci.registry import RegistryClient  # only when the store lacks the image

    client = RegistryClient(registries)
    try:
        resolved = await client.resolve(ref)
        config = await resolved.repository.read_blob(resolved.manifest.config)
        store.put_blob(config)
        for layer in resolved.manifest.layers:
            if store.has_blob(layer.digest):
                continue
            tmp = store.temp_blob()
            try:
                with tmp.open("wb") as sink:
                    await resolved.repository.get_blob(layer, sink)
                store.commit_blob(tmp, layer.digest)
            finally:
                tmp.unlink(missing_ok=True)
        digest = store.put_blob(resolved.raw)
    except OCIError as exc:
        raise MissingImage(
            f"base image {ref} was not found in the build store ({store.root}) nor in its "
            f"registry ({exc}); load it with `pilothouse build --load ARCHIVE` or push it to a "
            "registry (with --registries for a mirror)"
        ) from None
    desc = m.Descriptor(m.OCI_MANIFEST, digest, len(resolved.raw))
    store.tag(str(ref), m.Descriptor(resolved.media_type, desc.digest, desc.size))
    log.info("build.base_pulled", image=str(ref), digest=digest)
    return digest


def load(store: BuildStore, archive: Path) -> list[tuple[str, str]]:
    """Import every image of an archive; return (name, manifest digest) for each named one."""
    out: list[tuple[str, str]] = []
    try:
        with ImageArchive(archive) as arc:
            for image in arc.images:
                manifest = m.parse_manifest(image.manifest)
                for desc in (manifest.config, *manifest.layers):
                    if store.has_blob(desc.digest):
                        continue
                    tmp = store.temp_blob()
                    try:
                        with tmp.open("wb") as sink:
                            arc.copy_blob(desc.digest, sink)
                        store.commit_blob(tmp, desc.digest)
                    finally:
                        with contextlib.suppress(FileNotFoundError):
                            tmp.unlink()
                digest = store.put_blob(image.manifest)
                for name in image.names:
                    store.tag(name, m.Descriptor(image.media_type, digest, len(image.manifest)))
                    out.append((name, digest))
    except OCIError as exc:
        raise BuildError(f"cannot load {archive}: {exc}") from None
    return out
