"""Manifests, indexes and image configs: the JSON documents of an image, as frozen data.

Accepts both OCI and Docker schema-2 media types. An index (or Docker manifest list) is
resolved to one platform, linux/amd64 by default.

Invariants: parsing never trusts the document beyond its shape: every digest is validated, and
a manifest's config and layers are descriptors whose bytes are verified when they are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pilothouse.oci import OCIError, is_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class ManifestError(OCIError):
    """A manifest, index or config is malformed or unsupported."""


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform:
            out["platform"] = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Config:
    """The parts of an image config a node needs."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str
    exposed_ports: tuple[str, ...]
    labels: dict[str, str]
    diff_ids: tuple[str, ...]
    os: str
    architecture: str


def descriptor(data: Any, *, what: str) -> Descriptor:
    if not isinstance(data, dict):
        raise ManifestError(f"{what} is not an object")
    digest = data.get("digest")
    size = data.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise ManifestError(f"{what} has an invalid digest {digest!r}")
    if not isinstance(size, int) or size < 0:
        raise ManifestError(f"{what} has an invalid size {size!r}")
    plat = data.get("platform")
    platform = None
    if isinstance(plat, dict):
        platform = Platform(
            os=str(plat.get("os", "")),
            architecture=str(plat.get("architecture", "")),
            variant=str(plat.get("variant", "")),
        )
    annotations = data.get("annotations") or {}
    return Descriptor(
        media_type=str(data.get("mediaType", "")),
        digest=digest,
        size=size,
        platform=platform,
        annotations={str(k): str(v) for k, v in annotations.items()},
    )


def _load(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return data


def media_type_of(raw: bytes, header: str = "") -> str:
    """The document's media type: its own mediaType field, else the transport's header."""
    data = _load(raw, "manifest")
    declared = data.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if header:
        return header.split(";")[0].strip()
    if "manifests" in data:
        return OCI_INDEX
    return OCI_MANIFEST


def parse_manifest(raw: bytes) -> Manifest:
    data = _load(raw, "manifest")
    if data.get("schemaVersion") != 2:
        raise ManifestError(
            f"manifest schemaVersion {data.get('schemaVersion')!r} is not supported (want 2)"
        )
    media_type = str(data.get("mediaType") or OCI_MANIFEST)
    if media_type not in MANIFEST_TYPES:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("manifest has no layers list")
    return Manifest(
        media_type=media_type,
        config=descriptor(data.get("config"), what="manifest config"),
        layers=tuple(
            descriptor(item, what=f"manifest layers[{i}]") for i, item in enumerate(layers)
        ),
    )


def parse_index(raw: bytes) -> Index:
    data = _load(raw, "index")
    media_type = str(data.get("mediaType") or OCI_INDEX)
    items = data.get("manifests")
    if not isinstance(items, list):
        raise ManifestError("index has no manifests list")
    return Index(
        media_type=media_type,
        manifests=tuple(descriptor(m, what=f"index manifests[{i}]") for i, m in enumerate(items)),
    )


def select_platform(index: Index, platform: Platform | None = None) -> Descriptor:
    """The index entry for `platform` (default linux/amd64); an error lists what is offered."""
    want = platform or Platform()
    for item in index.manifests:
        p = item.platform
        if (
            p
            and (p.os, p.architecture) == (want.os, want.architecture)
            and (not want.variant or p.variant in ("", want.variant))
        ):
            return item
    offered = sorted(
        f"{d.platform.os}/{d.platform.architecture}" for d in index.manifests if d.platform
    )
    raise ManifestError(
        f"no image for platform {want.os}/{want.architecture} in the index "
        f"(it offers: {', '.join(offered) or 'none'})"
    )


def parse_config(raw: bytes) -> Config:
    data = _load(raw, "image config")
    conf = data.get("config") or {}
    rootfs = data.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and is_digest(d) for d in diff_ids
    ):
        raise ManifestError("image config has no valid rootfs.diff_ids")

    def strings(key: str) -> tuple[str, ...]:
        value = conf.get(key) or []
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    return Config(
        entrypoint=strings("Entrypoint"),
        cmd=strings("Cmd"),
        env=strings("Env"),
        working_dir=str(conf.get("WorkingDir") or ""),
        user=str(conf.get("User") or ""),
        exposed_ports=tuple(sorted((conf.get("ExposedPorts") or {}).keys())),
        labels={str(k): str(v) for k, v in (conf.get("Labels") or {}).items()},
        diff_ids=tuple(diff_ids),
        os=str(data.get("os") or ""),
        architecture=str(data.get("architecture") or ""),
    )
