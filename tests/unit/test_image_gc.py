"""Image garbage collection by disk usage, on the fake image service: kubelet's thresholds,
least recently used first, never an image in use, and what it says about it as events."""

from __future__ import annotations

import pytest

from nodeagent.images import PullPolicy, gcplan
from nodeagent.images.diskgc import (
    DiskUsage,
    GcEvent,
    GcPolicy,
    GcReason,
    ImageGarbageCollector,
)
from nodeagent.images.fake import FakeImageService
from pilothouse.oci.reference import normalize

MB = 1_000_000
CAPACITY = 100 * MB


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0  # every use one second after the one before
        return self.now


async def node(sizes: dict[str, int], *, clock: Clock) -> FakeImageService:
    """A fake node holding these images (pulled in this order), with no minimum age."""
    images = FakeImageService(sizes=sizes, clock=clock, gc_grace_seconds=0)
    for reference in sizes:
        await images.ensure(reference, PullPolicy.IF_NOT_PRESENT)
    return images


def collector(
    images: FakeImageService, events: list[GcEvent], *, other: int = 0, clock: Clock
) -> ImageGarbageCollector:
    """A collector whose file system holds the fake's images and `other` bytes."""

    def usage() -> DiskUsage:
        held = sum(images._size(d) for d in images.stored)
        return DiskUsage(capacity=CAPACITY, available=CAPACITY - held - other)

    return ImageGarbageCollector(
        images,
        path=None,
        report=events.append,
        usage=usage,
        clock=clock,  # type: ignore[arg-type]
    )


def test_usage_is_computed_as_the_kubelet_does() -> None:
    assert DiskUsage(capacity=1000, available=151).used_percent == 85
    assert DiskUsage(capacity=1000, available=150).used_percent == 85
    assert DiskUsage(capacity=1000, available=149).used_percent == 86
    assert DiskUsage(capacity=0, available=0).used_percent == 0


def test_the_default_policy_is_the_kubelets() -> None:
    policy = GcPolicy()
    assert (policy.high_percent, policy.low_percent, policy.period) == (85, 80, 300.0)
    with pytest.raises(ValueError, match="must be below the high one"):
        GcPolicy(high_percent=80, low_percent=80)


def test_plan_counts_a_shared_part_only_when_its_last_holder_goes() -> None:
    held = {
        "a": gcplan.Held("a", 1.0, frozenset({"base", "a-top"})),
        "b": gcplan.Held("b", 2.0, frozenset({"base", "b-top"})),
        "c": gcplan.Held("c", 3.0, frozenset({"c-top"})),
    }
    sizes = {"base": 50, "a-top": 10, "b-top": 10, "c-top": 30}
    order = gcplan.removable(held, in_use={"c"}, now=10.0, min_age=0)
    assert order == ["a", "b"], "not least recently used first, or an image in use offered"
    first = gcplan.plan(held, candidates=order, size=sizes.__getitem__, bytes_to_free=10)
    assert (first.remove, first.freed) == (("a",), 10)
    assert first.keep == {"base", "b-top", "c-top"}
    both = gcplan.plan(held, candidates=order, size=sizes.__getitem__, bytes_to_free=30)
    assert (both.remove, both.freed) == (("a", "b"), 70), "the shared base was not freed"
    assert gcplan.removable(held, in_use=(), now=10.0, min_age=8.5) == ["a"], (
        "an image used within the minimum age was offered"
    )


async def test_below_the_high_threshold_nothing_is_removed() -> None:
    clock = Clock()
    images = await node({"web:v1": 10 * MB, "web:v2": 10 * MB}, clock=clock)
    events: list[GcEvent] = []
    done = await collector(images, events, other=64 * MB, clock=clock).collect_once()
    assert done.before is not None and done.before.used_percent == 84
    assert done.removed == () and events == [] and len(images.stored) == 2


async def test_over_85_percent_frees_down_to_80_oldest_unused_first_never_a_used_one() -> None:
    clock = Clock()
    sizes = {f"registry.test/app:v{i}": 10 * MB for i in range(1, 7)}
    images = await node(sizes, clock=clock)  # v1 is the least recently used
    v1 = images.lookup("registry.test/app:v1")
    assert v1 is not None
    await images.prepare("web-0", v1)  # ... and in use
    events: list[GcEvent] = []
    done = await collector(images, events, other=30 * MB, clock=clock).collect_once()
    assert done.before is not None and done.before.used_percent == 90
    assert done.after is not None and done.after.used_percent <= 80, done.after
    assert done.bytes_to_free == 10 * MB
    removed = [image.names for image in done.removed]
    assert removed == [(normalize("registry.test/app:v2"),)], (
        f"expected only the least recently used unused image to go, removed {removed}"
    )
    assert images.lookup("registry.test/app:v1") is not None, "gc removed an image in use"
    assert [e.reason for e in events] == [GcReason.IMAGE_REMOVED]
    assert not events[0].warning
    assert events[0].message.startswith("Removed unused image registry.test/app:v2 (sha256:"), (
        events[0].message
    )
    assert "10.0 MB" in events[0].message and "90% used" in events[0].message


async def test_too_little_to_remove_is_free_disk_space_failed() -> None:
    clock = Clock()
    images = await node({"web:v1": 10 * MB, "web:v2": 10 * MB}, clock=clock)
    for key, reference in (("a", "web:v1"), ("b", "web:v2")):
        found = images.lookup(reference)
        assert found is not None
        await images.prepare(key, found)
    events: list[GcEvent] = []
    done = await collector(images, events, other=70 * MB, clock=clock).collect_once()
    assert done.removed == ()
    assert len(images.stored) == 2, "gc removed an image in use"
    assert [(e.reason, e.warning) for e in events] == [(GcReason.FREE_DISK_SPACE_FAILED, True)]
    assert events[0].message == (
        "Failed to garbage collect required amount of images. Attempted to free "
        f"{10 * MB} bytes, but only found 0 bytes eligible to free."
    )


async def test_an_unreadable_file_system_is_image_gc_failed() -> None:
    clock = Clock()
    images = await node({"web:v1": 10 * MB}, clock=clock)
    events: list[GcEvent] = []

    def broken() -> DiskUsage:
        raise OSError(5, "Input/output error")

    gc = ImageGarbageCollector(
        images,
        path="/var/lib/pilothouse/agent/images",  # type: ignore[arg-type]
        report=events.append,
        usage=broken,
    )
    done = await gc.collect_once()
    assert done.before is None and len(images.stored) == 1
    assert [(e.reason, e.warning) for e in events] == [(GcReason.IMAGE_GC_FAILED, True)]
    assert "failed to get image filesystem info" in events[0].message
    assert "Input/output error" in events[0].message
