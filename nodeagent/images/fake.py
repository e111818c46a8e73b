"""An in-memory ImageService with knobs, for unit tests and hollow nodes.

It keeps the real store's model without files: images on the node by digest, tags naming
them, container keys preparing them, last uses. A tag resolves to an image whose digest is
derived from the reference and how many times it was `push`ed (a digest reference keeps its
digest), with the config given in `configs` (default: an `sh -c 'sleep 3600'` entrypoint
and cmd) and one made-up layer of the image's own.

Knobs: `pull_errors[reference] = message` makes a pull fail as a registry would (`PullError`),
until the entry is removed; `present` lists images already on the node (policy Never succeeds
only for those, or for anything pulled before); `pull_seconds` is how long a pull takes;
`sizes[reference]` an image's size in bytes (default `DEFAULT_SIZE`), half of it its layer;
`push(reference)` makes the registry name a new image for a tag; `clock` is the wall clock
of last uses. `pulls` records every registry contact (failed ones too), in order;
`pull_records` what came of each successful one, as the real store records them.

Invariants (those of the real service, checked by tests/contract/test_images.py): `ensure`
goes through the same `pulls.Pulls` as the real store (policies, bad names, one pull per
reference at once; Always fetches only a changed digest); `prepare` describes an overlay
rootfs (top layer first) for one valid container key of an image still on the node and
remembers the key until `release`; `release` is idempotent; `gc` chooses through the same
`gcplan` as the real store; `restarted()` is a new service over the same node (what the node
holds and its last uses survive).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import time
from collections import deque
from collections.abc import Callable

from nodeagent.images import (
    Image,
    ImageConfig,
    ImageError,
    PullError,
    PullOutcome,
    PullPolicy,
    PullRecord,
    StoredImage,
    gcplan,
)
from nodeagent.images.pulls import Auths, Pulls
from nodeagent.runtime import Mount
from pilothouse.oci.reference import InvalidReference, Reference, parse

DEFAULT_CONFIG = ImageConfig(
    entrypoint=("/bin/sh",),
    cmd=("-c", "sleep 3600"),
    env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
)
DEFAULT_SIZE = 1 << 20


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
        gc_grace_seconds: float = 120.0,
        sizes: dict[str, int] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.configs = dict(configs or {})
        self.pull_errors = dict(pull_errors or {})
        self.pull_seconds = pull_seconds
        self.gc_grace_seconds = gc_grace_seconds
        self.sizes = {normalize(k): v for k, v in (sizes or {}).items()}
        self.clock = clock or _ticking()
        self.pulls: list[str] = []  # every reference the registry was asked for, in order
        self.pull_credentials: list[dict[str, object]] = []  # and with what credentials
        self.pull_records: deque[PullRecord] = deque(maxlen=100)
        self.prepared: dict[str, Image] = {}  # container key -> image
        self.stored: dict[str, Image] = {}  # digest -> image on the node
        self.tags: dict[str, str] = {}  # normalized reference -> digest
        self.last_used: dict[str, float] = {}  # digest -> wall-clock seconds
        self.pushes: dict[str, int] = {}  # normalized reference -> times pushed anew
        self._pulls = Pulls(lookup=self.lookup, pull=self._pull)
        for reference in present:
            self._store(parse(reference))

    def restarted(self) -> FakeImageService:
        """A new service over this one's node (the agent restarted): images, tags, last
        uses and prepared keys are shared."""
        again = copy.copy(self)
        again._pulls = Pulls(lookup=again.lookup, pull=again._pull)
        return again

    def push(self, reference: str) -> None:
        """The registry now names another image for this tag (a new build was pushed)."""
        key = normalize(reference)
        self.pushes[key] = self.pushes.get(key, 0) + 1

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
        seed = f"{name}#{self.pushes.get(name, 0)}" if self.pushes.get(name) else name
        digest = ref.digest or "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
        layer = "sha256:" + hashlib.sha256(b"layer:" + digest.encode()).hexdigest()
        return Image(reference=name, digest=digest, config=config, diff_ids=(layer,))

    def _store(self, ref: Reference) -> Image:
        image = self._image(ref)
        self.stored[image.digest] = image
        self.tags[str(ref)] = image.digest
        self.last_used[image.digest] = self.clock()
        return image

    # -- ImageService -------------------------------------------------------------------------
    def lookup(self, reference: str) -> Image | None:
        ref = parse(reference)
        digest = self.tags.get(str(ref)) or ref.digest
        image = self.stored.get(digest) if digest else None
        return dataclasses.replace(image, reference=str(ref)) if image else None

    async def ensure(
        self, reference: str, policy: PullPolicy, *, credentials: Auths | None = None
    ) -> Image:
        image = await self._pulls.ensure(reference, policy, credentials=credentials)
        self.last_used[image.digest] = self.clock()
        return image

    async def _pull(self, ref: Reference, credentials: Auths) -> Image:
        self.pulls.append(str(ref))
        self.pull_credentials.append(dict(credentials))
        await asyncio.sleep(self.pull_seconds)
        message = self._knob(self.pull_errors, ref)
        if message is not None:
            raise PullError(f'failed to pull image "{ref}": {message}')
        local = self.lookup(str(ref))
        if local is not None and local.digest == self._image(ref).digest:
            self.pull_records.append(PullRecord(str(ref), local.digest, PullOutcome.UNCHANGED))
            return local
        image = self._store(ref)
        self.pull_records.append(PullRecord(str(ref), image.digest, PullOutcome.PULLED))
        return image

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
        self.last_used[image.digest] = self.clock()
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
        released = self.prepared.pop(container_key, None)
        if released is not None:
            self.last_used[released.digest] = self.clock()

    def _size(self, digest: str) -> int:
        names = [n for n, d in self.tags.items() if d == digest]
        return next((self.sizes[n] for n in names if n in self.sizes), DEFAULT_SIZE)

    def _parts(self, digest: str) -> dict[str, int]:
        """The image's made-up parts and their sizes: a manifest blob and its layer."""
        layer = self.stored[digest].diff_ids[0]
        size = self._size(digest)
        return {f"blob:{digest}": size - size // 2, f"layer:{layer}": size // 2}

    async def images(self) -> list[StoredImage]:
        users: dict[str, list[str]] = {}
        for key, image in sorted(self.prepared.items()):
            users.setdefault(image.digest, []).append(key)
        return [
            StoredImage(
                digest=digest,
                names=tuple(sorted(n for n, d in self.tags.items() if d == digest)),
                size=self._size(digest),
                last_used=self.last_used.get(digest, 0.0),
                users=tuple(users.get(digest, ())),
            )
            for digest in sorted(self.stored)
        ]

    async def gc(self, *, bytes_to_free: int | None = None) -> list[str]:
        sizes = {part: n for digest in self.stored for part, n in self._parts(digest).items()}
        held = {
            digest: gcplan.Held(
                digest=digest,
                last_used=self.last_used.get(digest, 0.0),
                parts=frozenset(self._parts(digest)),
            )
            for digest in self.stored
        }
        candidates = gcplan.removable(
            held,
            in_use={image.digest for image in self.prepared.values()},
            now=self.clock(),
            min_age=self.gc_grace_seconds,
        )
        chosen = gcplan.plan(
            held, candidates=candidates, size=sizes.__getitem__, bytes_to_free=bytes_to_free
        )
        for digest in chosen.remove:
            del self.stored[digest]
            self.last_used.pop(digest, None)
        for name in [n for n, d in self.tags.items() if d in chosen.remove]:
            del self.tags[name]
        return list(chosen.remove)


def _ticking() -> Callable[[], float]:
    """The wall clock, made strictly increasing: two uses are never at the same time."""
    last = [0.0]

    def now() -> float:
        last[0] = max(time.time(), last[0] + 1e-6)
        return last[0]

    return now


def _check(container_key: str) -> None:
    if not container_key or "/" in container_key or container_key in (".", ".."):
        raise ImageError(f"invalid container key {container_key!r}")
