"""An in-memory ImageService with knobs, for unit tests and hollow nodes.

It keeps the real store's model without files: images on the node by digest, tags naming
them, container keys preparing them. A tag resolves to an image whose digest is derived from
the reference (a digest reference keeps its digest), with the config given in `configs`
(default: an `sh -c 'sleep 3600'` entrypoint and cmd) and one made-up layer.

Knobs: `pull_errors[reference] = message` makes a pull fail as a registry would (`PullError`),
until the entry is removed; `present` lists images already on the node (policy Never succeeds
only for those, or for anything pulled before); `pull_seconds` is how long a pull takes.
`pulls` records every pull asked of the registry (failed ones too), in order.

Invariants (those of the real service, checked by tests/contract/test_images.py): `ensure`
goes through the same `pulls.Pulls` as the real store (policies, bad names, one pull per
reference at once); `prepare` describes an overlay rootfs (top layer first)
for one valid container key of an image still on the node and remembers the key until
`release`; `release` is idempotent; `gc` removes every image no container key uses and none
ensured within the grace period; `restarted()` is a new service over the same node (what the
node holds survives, the memory of recent pulls does not).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import time

from nodeagent.images import (
    Image,
    ImageConfig,
    ImageError,
    PullError,
    PullPolicy,
)
from nodeagent.images.pulls import Pulls
from nodeagent.runtime import Mount
from pilothouse.oci.reference import InvalidReference, Reference, parse

DEFAULT_CONFIG = ImageConfig(
    entrypoint=("/bin/sh",),
    cmd=("-c", "sleep 3600"),
    env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
)


def normalize(reference: str) -> str:
    """Docker's normalization: "busybox" -> "docker.io/library/busybox:latest"."""
    return str(parse(reference))


class FakeImageService:
    def __init__(
        self,
        *,
        configs: dict[str, ImageConfig] | None = None,
        pull_errors: dict[str, str] | None = None,
        present: tuple[str, ...] = (),
        pull_seconds: float = 0.0,
        gc_grace_seconds: float = 60.0,
    ) -> None:
        self.configs = dict(configs or {})
        self.pull_errors = dict(pull_errors or {})
        self.pull_seconds = pull_seconds
        self.gc_grace_seconds = gc_grace_seconds
        self.pulls: list[str] = []  # every reference the registry was asked for, in order
        self.prepared: dict[str, Image] = {}  # container key -> image
        self.stored: dict[str, Image] = {}  # digest -> image on the node
        self.tags: dict[str, str] = {}  # normalized reference -> digest
        self._pulls = Pulls(lookup=self.lookup, pull=self._pull)
        self._recent: dict[str, float] = {}  # digest -> when last ensured (spared by gc)
        for reference in present:
            self._store(parse(reference))

    def restarted(self) -> FakeImageService:
        """A new service over this one's node (the agent restarted): images, tags and
        prepared keys are shared; recent pulls are forgotten."""
        again = copy.copy(self)
        again._pulls = Pulls(lookup=again.lookup, pull=again._pull)
        again._recent = {}
        return again

    # -- the registry's side ------------------------------------------------------------------
    def _knob(self, knobs: dict[str, object], ref: Reference) -> object | None:
        for key, value in knobs.items():
            try:
                if normalize(key) == str(ref):
                    return value
            except InvalidReference:
                continue
        return None

    def _image(self, ref: Reference) -> Image:
        name = str(ref)
        found = self._knob(self.configs, ref)
        config = found if isinstance(found, ImageConfig) else DEFAULT_CONFIG
        digest = ref.digest or "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        layer = "sha256:" + hashlib.sha256(b"layer:" + digest.encode()).hexdigest()
        return Image(reference=name, digest=digest, config=config, diff_ids=(layer,))

    def _store(self, ref: Reference) -> Image:
        image = self._image(ref)
        self.stored[image.digest] = image
        self.tags[str(ref)] = image.digest
        return image

    # -- ImageService -------------------------------------------------------------------------
    def lookup(self, reference: str) -> Image | None:
        ref = parse(reference)
        digest = self.tags.get(str(ref)) or ref.digest
        image = self.stored.get(digest) if digest else None
        return dataclasses.replace(image, reference=str(ref)) if image else None

    async def ensure(self, reference: str, policy: PullPolicy) -> Image:
        image = await self._pulls.ensure(reference, policy)
        self._recent[image.digest] = time.monotonic()
        return image

    async def _pull(self, ref: Reference) -> Image:
        self.pulls.append(str(ref))
        await asyncio.sleep(self.pull_seconds)
        message = self._knob(self.pull_errors, ref)
        if message is not None:
            raise PullError(f'failed to pull image "{ref}": {message}')
        return self._store(ref)

    async def prepare(self, container_key: str, image: Image) -> list[Mount]:
        _check(container_key)
        if not image.diff_ids:
            raise ImageError(f'image "{image.reference}" has no layers: nothing to run')
        if image.digest not in self.stored:
            raise ImageError(
                f'image "{image.reference}" is no longer on the node '
                "(garbage-collected); pull it again"
            )
        self.prepared[container_key] = image
        top_first = dict.fromkeys(reversed(image.diff_ids))
        lower = ":".join(f"/fake/layers/{d.removeprefix('sha256:')}" for d in top_first)
        options = (
            f"lowerdir={lower}",
            f"upperdir=/fake/containers/{container_key}/upper",
            f"workdir=/fake/containers/{container_key}/work",
        )
        return [Mount(type="overlay", source="overlay", target="/", options=options)]

    async def release(self, container_key: str) -> None:
        _check(container_key)
        self.prepared.pop(container_key, None)

    async def gc(self) -> list[str]:
        now = time.monotonic()
        used = {image.digest for image in self.prepared.values()}
        used |= {d for d, t in self._recent.items() if now - t < self.gc_grace_seconds}
        removed = [digest for digest in self.stored if digest not in used]
        for digest in removed:
            del self.stored[digest]
        for name in [n for n, d in self.tags.items() if d in removed]:
            del self.tags[name]
        return removed


def _check(container_key: str) -> None:
    if not container_key or "/" in container_key or container_key in (".", ".."):
        raise ImageError(f"invalid container key {container_key!r}")
