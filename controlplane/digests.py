"""Image digests for revisions: a tag is resolved to the digest it names when a revision is made.

Vocabulary:
- pinned image: `repo@sha256:…`, the exact manifest a tag named when the revision was created;
  a revision (ReplicaSet) runs the same bytes for ever, even after the tag moves.
- original: what the Deployment's template said (`web:v1`); kept in the pod template annotation
  `pilothouse.io/image.<container>` so people (and `rollout history`) still see the tag.
- resolver (`DigestResolver`): `resolve(image) -> digest`, raising `Unresolved` with a reason a
  person can act on. `RegistryDigestResolver` asks the registries (with the same
  registries.yaml the agents use: mirrors, credentials, insecure hosts); `StaticDigests` is a
  table for tests; `NoDigests` turns resolution off.

Invariants:
- Resolution never blocks a rollout: every failure (registry unreachable, no such tag, a
  timeout) leaves the image as written and is reported in `Pinned.failures`.
- An image already given by digest is left alone, and so is its original-tag annotation (a
  rollback copies a pinned template back into the Deployment: it must stay pinned and keep
  saying where it came from).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from pilothouse.oci import OCIError
from pilothouse.oci.reference import parse
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.oci.registry import NotFound, Repository, Unreachable
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

ORIGINAL_ANNOTATION_PREFIX = "pilothouse.io/image."
DEFAULT_TIMEOUT = 10.0


class Unresolved(Exception):
    """The image's digest could not be learnt; the message says why."""


class Disabled(Unresolved):
    """Resolution is turned off (no registries configured): not worth a warning."""


class DigestResolver(Protocol):
    async def resolve(self, image: str) -> str:
        """The `sha256:…` digest that the tag reference `image` names right now."""
        ...


@dataclass(frozen=True, slots=True)
class Failure:
    container: str
    image: str
    reason: str


@dataclass(frozen=True, slots=True)
class Pinned:
    template: objects_pb2.PodTemplateSpec
    failures: tuple[Failure, ...]


def original_annotation(container: str) -> str:
    return f"{ORIGINAL_ANNOTATION_PREFIX}{container}"


def is_pinned(image: str) -> bool:
    return "@" in image


def with_digest(image: str, digest: str) -> str:
    """`web:v1` -> `web@sha256:…` (the repository as written, tag replaced by the digest)."""
    head, slash, last = image.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}{slash}{name}@{digest}"


async def pin(template: objects_pb2.PodTemplateSpec, resolver: DigestResolver) -> Pinned:
    """`template` with every tagged container image replaced by its digest (see invariants)."""
    pinned = objects_pb2.PodTemplateSpec()
    pinned.CopyFrom(template)
    failures: list[Failure] = []
    annotations = pinned.metadata.annotations
    for container in pinned.spec.containers:
        key = original_annotation(container.name)
        if is_pinned(container.image):
            continue
        annotations.pop(key, None)  # a stale original from an earlier pinned template
        try:
            digest = await resolver.resolve(container.image)
        except Disabled:
            continue
        except Unresolved as error:
            failures.append(Failure(container.name, container.image, str(error)))
            continue
        annotations[key] = container.image
        container.image = with_digest(container.image, digest)
    return Pinned(template=pinned, failures=tuple(failures))


class NoDigests:
    """Resolution off: every revision runs its images as tagged."""

    async def resolve(self, image: str) -> str:
        raise Disabled("image digest resolution is off (no registries configured)")


class StaticDigests:
    """A table image -> digest (tests change it to 'push' a tag anew)."""

    def __init__(self, digests: Mapping[str, str] | None = None) -> None:
        self.digests: dict[str, str] = dict(digests or {})

    async def resolve(self, image: str) -> str:
        try:
            return self.digests[image]
        except KeyError:
            raise Unresolved(f"manifest unknown: no tag {image!r} in the registry") from None


class RegistryDigestResolver:
    """Asks the image's registry endpoints (mirrors first) for the tag's manifest digest."""

    def __init__(
        self, config: RegistriesConfig | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._config = config or RegistriesConfig()
        self._timeout = timeout

    async def resolve(self, image: str) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._resolve(image)
        except TimeoutError:
            raise Unresolved(
                f"{image}: the registry did not answer within {self._timeout:g} s"
            ) from None

    async def _resolve(self, image: str) -> str:
        try:
            ref = parse(image)
            endpoints = self._config.endpoints(ref.registry)
        except OCIError as error:
            raise Unresolved(str(error)) from None
        reasons: list[str] = []
        for endpoint in endpoints:
            repository = Repository(endpoint, ref.repository)
            try:
                _, _, digest = await repository.get_manifest(ref.object)
            except (NotFound, Unreachable) as error:
                reasons.append(f"{endpoint.url}: {error}")
                continue
            except OCIError as error:
                raise Unresolved(f"{image}: {endpoint.url}: {error}") from None
            log.debug("image.resolved", image=image, digest=digest, endpoint=endpoint.url)
            return digest
        raise Unresolved(f"{image}: " + "; ".join(reasons or ["no registry endpoint"]))
