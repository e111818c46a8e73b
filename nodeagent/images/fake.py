"""An in-memory ImageService with knobs, for unit tests and hollow nodes.

Every reference resolves to an image whose digest is derived from the reference, with the
config given in `configs` (default: `sh -c 'sleep infinity'`-like entrypoint and cmd).
Knobs: `pull_errors[reference] = message` makes `ensure` fail as a registry would
(`PullError`), until the entry is removed; `present` lists what is already on the node
(policy Never succeeds only for those, or for anything pulled before).

Invariants (the same as the real service's): `prepare` describes an overlay rootfs for one
container key and remembers the key until `release`; `release` is idempotent.
"""

from __future__ import annotations

import hashlib

from nodeagent.images import Image, ImageConfig, NotPresent, PullError, PullPolicy
from nodeagent.runtime import Mount

DEFAULT_CONFIG = ImageConfig(
    entrypoint=("/bin/sh",),
    cmd=("-c", "sleep 3600"),
    env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
)


def normalize(reference: str) -> str:
    """Docker's normalization: "busybox" -> "docker.io/library/busybox:latest"."""
    name, sep, digest = reference.partition("@")
    first, slash, _ = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if slash else "library/" + name)
    if not sep and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + sep + digest


class FakeImageService:
    def __init__(
        self,
        *,
        configs: dict[str, ImageConfig] | None = None,
        pull_errors: dict[str, str] | None = None,
        present: tuple[str, ...] = (),
    ) -> None:
        self.configs = dict(configs or {})
        self.pull_errors = dict(pull_errors or {})
        self.present: set[str] = {normalize(r) for r in present}
        self.pulls: list[str] = []  # every reference actually pulled, in order
        self.prepared: dict[str, Image] = {}  # container key -> image

    def _image(self, reference: str) -> Image:
        ref = normalize(reference)
        config = self.configs.get(reference) or self.configs.get(ref) or DEFAULT_CONFIG
        digest = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        layer = "sha256:" + hashlib.sha256(b"layer:" + ref.encode()).hexdigest()
        return Image(reference=ref, digest=digest, config=config, diff_ids=(layer,))

    async def ensure(self, reference: str, policy: PullPolicy) -> Image:
        ref = normalize(reference)
        if policy is PullPolicy.NEVER or (
            policy is PullPolicy.IF_NOT_PRESENT and ref in self.present
        ):
            if ref not in self.present:
                raise NotPresent(
                    f'Container image "{reference}" is not present with pull policy of Never'
                )
            return self._image(reference)
        message = self.pull_errors.get(reference) or self.pull_errors.get(ref)
        if message is not None:
            raise PullError(f'failed to pull image "{reference}": {message}')
        self.pulls.append(ref)
        self.present.add(ref)
        return self._image(reference)

    async def prepare(self, container_key: str, image: Image) -> list[Mount]:
        self.prepared[container_key] = image
        lower = ":".join(f"/fake/layers/{d.removeprefix('sha256:')}" for d in image.diff_ids)
        options = (
            f"lowerdir={lower}",
            f"upperdir=/fake/containers/{container_key}/upper",
            f"workdir=/fake/containers/{container_key}/work",
        )
        return [Mount(type="overlay", source="overlay", target="/", options=options)]

    async def release(self, container_key: str) -> None:
        self.prepared.pop(container_key, None)

    async def gc(self) -> list[str]:
        in_use = {img.reference for img in self.prepared.values()}
        removed = sorted(self.present - in_use)
        self.present &= in_use
        return [self._image(r).digest for r in removed]
