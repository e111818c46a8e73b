"""Image garbage collection by disk usage, as the kubelet's image manager does it.

Every `GcPolicy.period` (kubelet's ImageGCPeriod: 5 min), the collector reads the usage of
the image file system (the file system holding the image store). When it is at or above
`high_percent` (kubelet's --image-gc-high-threshold, 85), it asks the image service to free
`capacity * (100 - low_percent) / 100 - available` bytes (down to --image-gc-low-threshold,
80) through `ImageService.gc(bytes_to_free=…)`, which removes unused images least recently
used first, never one a container uses nor one used within its minimum age.

What it does is said as events about the node (`GcEvent`, handed to `report`), in the
kubelet's words where the kubelet has them:
- Normal `ImageRemoved`, one per image removed, with its names, size and last use;
- Warning `FreeDiskSpaceFailed` when the file system gained less than it had to free (the
  images it may remove held less): "Failed to garbage collect required amount of images.
  Attempted to free N bytes, but only found M bytes eligible to free.";
- Warning `ImageGCFailed` when a pass fails (the file system cannot be read, a removal fails).

Invariants: a pass never raises (a failure is an event and a log line, and the next pass
tries again); below the high threshold nothing is removed and nothing is said.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from nodeagent.images import ImageError, ImageService, StoredImage

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class GcPolicy:
    high_percent: int = 85
    low_percent: int = 80
    period: float = 300.0  # seconds between passes

    def __post_init__(self) -> None:
        if not 0 <= self.low_percent < self.high_percent <= 100:
            raise ValueError(
                f"image gc thresholds: the low threshold ({self.low_percent} %) must be below "
                f"the high one ({self.high_percent} %), both between 0 and 100"
            )
        if self.period <= 0:
            raise ValueError(f"image gc period must be positive, got {self.period}")


@dataclass(frozen=True, slots=True)
class DiskUsage:
    capacity: int  # bytes
    available: int  # bytes

    @property
    def used_percent(self) -> int:
        """As the kubelet computes it: 100 - available * 100 / capacity, rounded down."""
        return 100 - self.available * 100 // self.capacity if self.capacity else 0


def disk_usage(path: Path) -> DiskUsage:
    """The usage of the file system holding `path` (what an unprivileged writer may use)."""
    st = os.statvfs(path)
    return DiskUsage(capacity=st.f_blocks * st.f_frsize, available=st.f_bavail * st.f_frsize)


class GcReason(enum.Enum):
    IMAGE_REMOVED = "ImageRemoved"
    FREE_DISK_SPACE_FAILED = "FreeDiskSpaceFailed"
    IMAGE_GC_FAILED = "ImageGCFailed"


@dataclass(frozen=True, slots=True)
class GcEvent:
    reason: GcReason
    message: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class GcPass:
    """What one pass saw and did."""

    before: DiskUsage | None  # None: the file system could not be read
    after: DiskUsage | None
    bytes_to_free: int = 0
    removed: tuple[StoredImage, ...] = ()
    events: tuple[GcEvent, ...] = ()


def size_text(size: int) -> str:
    """Bytes as a person reads them: 812 B, 3.4 kB, 31.2 MB, 1.1 GB (powers of 1000)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{max(int(seconds), 0)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


class ImageGarbageCollector:
    """The periodic pass above, over one image service and its file system."""

    def __init__(
        self,
        images: ImageService,
        *,
        path: Path,
        policy: GcPolicy | None = None,
        report: Callable[[GcEvent], None] = lambda event: None,
        usage: Callable[[], DiskUsage] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._images = images
        self._path = path
        self.policy = policy or GcPolicy()
        self._report = report
        self._usage = usage or (lambda: disk_usage(self._path))
        self._clock = clock

    async def run(self) -> None:
        """Runnable: a pass now, then one every period, until cancelled."""
        while True:
            await self.collect_once()
            await asyncio.sleep(self.policy.period)

    async def collect_once(self) -> GcPass:
        try:
            before = self._usage()
        except OSError as exc:
            return self._said(
                GcPass(before=None, after=None),
                GcEvent(
                    GcReason.IMAGE_GC_FAILED,
                    f"failed to get image filesystem info for {self._path}: {exc}",
                    warning=True,
                ),
            )
        if before.used_percent < self.policy.high_percent:
            return GcPass(before=before, after=before)
        amount = before.capacity * (100 - self.policy.low_percent) // 100 - before.available
        log.info(
            "image.gc_started",
            usage_percent=before.used_percent,
            high_percent=self.policy.high_percent,
            low_percent=self.policy.low_percent,
            bytes_to_free=amount,
        )
        try:
            held = {image.digest: image for image in await self._images.images()}
            digests = await self._images.gc(bytes_to_free=amount)
            after = self._usage()
        except (OSError, ImageError) as exc:
            return self._said(
                GcPass(before=before, after=None, bytes_to_free=amount),
                GcEvent(
                    GcReason.IMAGE_GC_FAILED,
                    f"failed to garbage collect images: {exc}",
                    warning=True,
                ),
            )
        removed = tuple(held[d] for d in digests if d in held)
        now = self._clock()
        why = (
            f"image filesystem {before.used_percent}% used, at or above the "
            f"{self.policy.high_percent}% threshold"
        )
        events = [
            GcEvent(
                GcReason.IMAGE_REMOVED,
                f"Removed unused image {_named(image)}{size_text(image.size)}, last used "
                f"{age_text(now - image.last_used)} ago) to free disk space: {why}",
            )
            for image in removed
        ]
        freed = after.available - before.available  # measured: shared layers count once
        if freed < amount:
            events.append(
                GcEvent(
                    GcReason.FREE_DISK_SPACE_FAILED,
                    "Failed to garbage collect required amount of images. Attempted to free "
                    f"{amount} bytes, but only found {freed} bytes eligible to free.",
                    warning=True,
                )
            )
        return self._said(
            GcPass(before=before, after=after, bytes_to_free=amount, removed=removed), *events
        )

    def _said(self, done: GcPass, *events: GcEvent) -> GcPass:
        for event in events:
            (log.warning if event.warning else log.info)(
                "image.gc_event", reason=event.reason.value, message=event.message
            )
            self._report(event)
        return GcPass(
            before=done.before,
            after=done.after,
            bytes_to_free=done.bytes_to_free,
            removed=done.removed,
            events=events,
        )


def _named(image: StoredImage) -> str:
    """The head of the removal message: `NAME (sha256:0123456789ab, `, or for an untagged
    image `sha256:0123456789ab (`."""
    short = image.digest[:19]
    return f"{image.names[0]} ({short}, " if image.names else f"{short} ("
