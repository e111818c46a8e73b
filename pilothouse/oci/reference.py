"""Image references: parse what a person or pod spec wrote, normalize it as Docker does.

`busybox:stable` -> `docker.io/library/busybox:stable`; `127.0.0.1:5000/web:v1` stays on that
registry; `name@sha256:…` pins a digest. A reference without tag or digest means `:latest`.

Invariants: a `Reference` is always normalized (lower-case repository, explicit registry and
tag-or-digest); `str(ref)` round-trips through `parse`. Errors name the input and the rule broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pilothouse.oci import OCIError, is_digest

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
)


class InvalidReference(OCIError):
    """The text is not a valid image reference."""


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str  # "docker.io", "127.0.0.1:5000"
    repository: str  # "library/busybox"
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """Registry and repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)


def parse(text: str) -> Reference:
    """Parse and normalize an image reference; raise `InvalidReference` saying what is wrong."""
    raw = text
    text = text.strip()
    if not text:
        raise InvalidReference("image reference is empty")
    if any(c.isspace() for c in text):
        raise InvalidReference(f"image reference {raw!r} contains whitespace")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not is_digest(digest):
            raise InvalidReference(
                f"image reference {raw!r}: digest {digest!r} is not sha256:<64 lower-case hex>"
            )
    tag: str | None = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidReference(
                f"image reference {raw!r}: tag {tag!r} is invalid "
                "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
            )
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, rest
        if not _DOMAIN.match(registry):
            raise InvalidReference(f"image reference {raw!r}: registry {registry!r} is invalid")
        if registry.lower() in _HUB_ALIASES:
            registry = DOCKER_HUB
    else:
        registry, path = DOCKER_HUB, text
    if not path:
        raise InvalidReference(f"image reference {raw!r} has no repository name")
    if path != path.lower():
        raise InvalidReference(f"image reference {raw!r}: repository name must be lower-case")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise InvalidReference(
                f"image reference {raw!r}: path component {component!r} is invalid "
                "(lower-case letters and digits, separated by '.', '_', '__' or '-')"
            )
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > 255:
        raise InvalidReference(f"image reference {raw!r} is longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)


def normalize(text: str) -> str:
    return str(parse(text))
