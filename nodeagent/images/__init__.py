"""Images on a node: the `ImageService` contract, its vocabulary, and the values it returns.

Two implementations: `store.LocalImageService` (a content store of blobs by digest and a layer
store of unpacked layers, on disk) and `fake.FakeImageService` (in memory, for unit tests and
hollow nodes). Both pass one suite, tests/contract/test_images.py.

Vocabulary:
- reference: what a pod spec says ("busybox:stable", "registry:5000/web@sha256:…"), normalized
  to "docker.io/library/busybox:stable"; a name that does not parse is a `PullError`.
- digest: "sha256:<hex>" of a blob (manifest, config or compressed layer).
- diff id: the digest of an uncompressed layer tar; a layer's directory is named by it.
- image: a resolved manifest: its digest (the image id a pod status shows), its config
  (entrypoint, cmd, env, workdir, user) and its layers' diff ids, bottom first.
- present: on the node, complete (every layer unpacked), found by a tag or by its digest.
- pull: contacting the registry to resolve a reference (and fetching what is new).
- container key: one container's name for its private rootfs dirs (no "/", not "." or "..").
- in use: an image that some container key has prepared and not yet released.
- last used: when the image was last ensured, prepared or released (wall clock, kept across
  restarts); garbage collection removes the least recently used first and spares an image
  used within its minimum age (`gc_grace_seconds`, kubelet's ImageMinimumGCAge: 2 min).
- size: the bytes an image holds on the node: its blobs and its unpacked layers (a layer
  shared by two images counts in each).

Invariants:
- Every blob is verified against its digest before it is used; a mismatch is refused.
- Each layer is unpacked once, read-only, and shared by every container using it; unpacking
  never writes outside the layer's own directory (see `pilothouse.oci.unpack`'s policy).
- `prepare(container_key, image)` only *describes* the overlay mounts; performing them is the
  runtime's job. Preparing the 10th container from an image copies no image file.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class PullOutcome(enum.Enum):
    PULLED = "Pulled"  # the registry's manifest was fetched (and what was new of the image)
    UNCHANGED = "Unchanged"  # Always: the registry named the digest present; nothing fetched


@dataclass(frozen=True, slots=True)
class PullRecord:
    """One registry contact of `ensure`: what it was for and what came of it."""

    reference: str  # normalized
    digest: str  # the image present afterwards
    outcome: PullOutcome


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One image on the node, as `images()` lists it (see the vocabulary above)."""

    digest: str
    names: tuple[str, ...]  # normalized references tagging it (none: known by digest only)
    size: int  # bytes
    last_used: float  # wall-clock seconds
    users: tuple[str, ...] = ()  # container keys using it


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
    # Every registry contact of `ensure`, oldest first (a bounded history, for tests and the
    # pod's events): a pull that fetched, or an Always whose digest had not changed.
    pull_records: Sequence[PullRecord]

    def lookup(self, reference: str) -> Image | None:
        """The image present for `reference`, or None; never contacts a registry."""
        ...

    async def ensure(
        self, reference: str, policy: PullPolicy, *, credentials: Mapping[str, Any] | None = None
    ) -> Image:
        """Make the image present per policy and return it, as the kubelet does (with a pod's
        registry `credentials` by host, from its imagePullSecrets, for this pull): Never never
        pulls (`NotPresent` when absent); IfNotPresent pulls only an absent image; Always asks
        the registry every time and fetches only when the digest it names differs from the
        one present (a HEAD of the manifest). Concurrent ensures of one reference share one
        pull; a failed pull is a `PullError` naming the normalized reference and saying why."""
        ...

    async def prepare(self, container_key: str, image: Image) -> list[Mount]:
        """Create the container's private upper/work dirs; describe its rootfs: one overlay
        mount at "/", top layer first. `ImageError` for a bad key, an image without layers
        or one no longer present (collected since it was ensured)."""
        ...

    async def release(self, container_key: str) -> None:
        """Remove the container's upper/work dirs: the image is no longer in use by it
        (idempotent)."""
        ...

    def images(self) -> list[StoredImage]:
        """Every image on the node, with its names, size, last use and users."""
        ...

    async def gc(self, *, bytes_to_free: int | None = None) -> list[str]:
        """Remove images (and their layers) no container key uses and none used within the
        grace period (across restarts), least recently used first; with `bytes_to_free`, stop
        once the removed images' sizes add up to that. Return the removed image digests."""
        ...
