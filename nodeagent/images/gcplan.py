"""Which images garbage collection removes: a pure choice over what the node holds.

Both ImageService implementations collect through `plan`: the real store over its meta
records, blobs and layer directories; the fake over its made-up ones.

Vocabulary:
- parts: what an image holds on disk, each named once on the node: its blobs (manifest,
  config, compressed layers) and its unpacked layers (by diff id). Images share parts.
- removable: an image no container key uses and not used within the minimum age.
- freed bytes: the size of the parts no image left on the node still holds.

Invariants:
- An image in use, or used within the minimum age, is never chosen.
- Removable images are chosen least recently used first (then by digest, so the choice is
  stable); with `bytes_to_free` the choice stops as soon as the freed bytes reach it, and
  without it every removable image is chosen.
- A part is kept exactly when an image left on the node holds it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Held:
    """One image as the planner sees it."""

    digest: str
    last_used: float  # wall-clock seconds
    parts: frozenset[str]


@dataclass(frozen=True, slots=True)
class Plan:
    remove: tuple[str, ...]  # image digests, in the order chosen
    freed: int  # bytes of the parts only they held
    keep: frozenset[str]  # parts some image left on the node holds


def removable(
    images: Mapping[str, Held], *, in_use: Collection[str], now: float, min_age: float
) -> list[str]:
    """The images that may go, least recently used first."""
    old = [h for d, h in images.items() if d not in in_use and now - h.last_used >= min_age]
    return [h.digest for h in sorted(old, key=lambda h: (h.last_used, h.digest))]


def plan(
    images: Mapping[str, Held],
    *,
    candidates: list[str],
    size: Callable[[str], int],
    bytes_to_free: int | None = None,
) -> Plan:
    """Choose among `candidates` (in their order) until `bytes_to_free` is freed (or all)."""
    holders = Counter(part for held in images.values() for part in held.parts)
    chosen: list[str] = []
    freed = 0
    for digest in candidates:
        if bytes_to_free is not None and freed >= bytes_to_free:
            break
        chosen.append(digest)
        for part in images[digest].parts:
            holders[part] -= 1
            if holders[part] == 0:
                freed += size(part)
    keep = frozenset(part for part, count in holders.items() if count > 0)
    return Plan(remove=tuple(chosen), freed=freed, keep=keep)
