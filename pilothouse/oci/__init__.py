"""OCI images as data: references, manifests, archives and a distribution-registry client.

Shared by the node agent (pull, import) and the CLI (push, building the test image); it knows
nothing about either process.

Vocabulary:
- reference: a normalized image name, `docker.io/library/busybox:stable` (`reference`).
- descriptor: media type + digest + size of one blob (`manifest.Descriptor`).
- manifest: an image manifest (config + layers); an index lists manifests per platform.
- digest: `sha256:<64 hex>`; every blob read from a registry or an archive is checked against
  it before anyone uses it.

Invariants:
- Nothing here trusts a byte it has not hashed: blob readers verify digests while streaming and
  refuse a mismatch with `DigestMismatch`.
"""

from __future__ import annotations

import hashlib
import re

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class OCIError(Exception):
    """Base for image-format and registry errors; the message is meant for a person."""


class DigestMismatch(OCIError):
    """Content did not hash to the digest that names it: it was corrupted or tampered with."""


def is_digest(value: str) -> bool:
    return bool(_DIGEST.match(value))


def digest_hex(digest: str) -> str:
    """The hex part of a sha256 digest, validated (so it is safe as a file name)."""
    if not is_digest(digest):
        raise OCIError(f"unsupported or malformed digest {digest!r} (want sha256:<64 hex>)")
    return digest.split(":", 1)[1]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
