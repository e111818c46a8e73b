"""Images on a node: a content store of blobs by digest, and a layer store of unpacked layers.

Vocabulary:
- reference: what a pod spec says ("busybox:stable", "registry:5000/web@sha256:…"), normalized
  to "docker.io/library/busybox:stable".
- digest: "sha256:<hex>" of a blob (manifest, config or compressed layer).
- diff id: the digest of an uncompressed layer tar; a layer's directory is named by it.
- image: a resolved manifest: its digest, its config (entrypoint, cmd, env, workdir, user) and
  its layers' diff ids, bottom first.

Invariants:
- Every blob is verified against its digest before it is used; a mismatch is refused.
- Each layer is unpacked once, read-only, and shared by every container using it; unpacking
  never writes outside the layer's own directory (see `nodeagent.images.unpack`'s policy).
- `prepare(container_key, image)` only *describes* the overlay mounts; performing them is the
  runtime's job. Preparing the 10th container from an image copies no image file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from nodeagent.runtime import Mount


class PullPolicy(enum.Enum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


def default_pull_policy(reference: str) -> PullPolicy:
    """Kubernetes' default: Always for ":latest" or no tag (and no digest), else IfNotPresent."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if digest or (tag and tag != "latest"):
        return PullPolicy.IF_NOT_PRESENT
    return PullPolicy.ALWAYS


class ImageError(Exception):
    """Base for image errors; the message is what the user sees in the pod status."""


class PullError(ImageError):
    """The image could not be pulled (ErrImagePull): the registry's message is included."""


class NotPresent(ImageError):
    """Policy Never and the image is not on the node (ErrImageNeverPull)."""


@dataclass(frozen=True, slots=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Image:
    reference: str
    digest: str  # manifest digest: the image id a pod status reports
    config: ImageConfig
    diff_ids: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)


class ImageService(Protocol):
    async def ensure(self, reference: str, policy: PullPolicy) -> Image:
        """Make the image present per policy (pulling if needed) and return it."""
        ...

    async def prepare(self, container_key: str, image: Image) -> list[Mount]:
        """Create the container's private upper/work dirs; describe its overlay rootfs."""
        ...

    async def release(self, container_key: str) -> None:
        """Remove the container's upper/work dirs (idempotent)."""
        ...

    async def gc(self) -> list[str]:
        """Remove images and layers no container uses; return the removed digests."""
        ...
