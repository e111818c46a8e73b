"""Image garbage collection by disk usage on the real image store, over a small tmpfs.

The store's images directory is a 16 MiB tmpfs filled with made-up images until more than 85 %
of it is used; one collector pass (kubelet's defaults) must bring it down to 80 % or below by
removing unused images least recently used first, never the image a container uses, and say
so in events.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.images import Image
from nodeagent.images.diskgc import GcEvent, GcReason, ImageGarbageCollector, disk_usage
from nodeagent.images.store import LocalImageService
from tests.fixtures.images import image_archive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """An agent state dir whose images/ is a 16 MiB tmpfs (unmounted afterwards)."""
    state = tmp_path / "state"
    images = state / "images"
    images.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "pilothouse-test-imagefs", images],
        check=True,
    )
    try:
        yield state
    finally:
        subprocess.run(["umount", images], check=True)


async def fill(images: LocalImageService, workdir: Path, *, percent: int) -> list[Image]:
    """Import 700 kB images, oldest first, until more than `percent` % is used."""
    imported: list[Image] = []
    while disk_usage(images.images_dir).used_percent <= percent:
        seed = len(imported) + 1
        archive = image_archive(
            workdir / f"app-{seed}.tar", tag=f"registry.test/app:v{seed}", size=700_000, seed=seed
        )
        imported += await images.import_archive(archive)
        assert len(imported) < 40, "the image filesystem does not fill up"
    return imported


async def test_over_85_percent_gc_frees_down_to_80_oldest_first_never_a_used_image(
    state_dir: Path, tmp_path: Path
) -> None:
    images = LocalImageService(state_dir, gc_grace_seconds=0)
    imported = await fill(images, tmp_path, percent=86)
    used = imported[3]
    await images.prepare("web-0", used)
    events: list[GcEvent] = []
    gc = ImageGarbageCollector(images, path=images.images_dir, report=events.append)
    done = await gc.collect_once()
    assert done.before is not None and done.before.used_percent > 85
    after = disk_usage(images.images_dir)
    assert after.used_percent <= 80, f"gc left the image filesystem {after.used_percent}% used"
    removed = [image.digest for image in done.removed]
    unused = [image.digest for image in imported if image is not used]
    assert removed == unused[: len(removed)], "gc did not remove the least recently used first"
    assert len(removed) < len(unused), "gc removed every unused image, not down to 80 %"
    assert used.digest not in removed and images.lookup(used.reference) is not None
    assert (await images.prepare("web-1", used))[0].type == "overlay", "the used image broke"
    for image in imported:
        present = images.lookup(image.reference) is not None
        assert present == (image.digest not in removed), image.reference
    assert [e.reason for e in events] == [GcReason.IMAGE_REMOVED] * len(removed)
    assert "registry.test/app:v1 (sha256:" in events[0].message, events[0].message


async def test_when_every_image_is_in_use_gc_says_it_could_not_free_enough(
    state_dir: Path, tmp_path: Path
) -> None:
    images = LocalImageService(state_dir, gc_grace_seconds=0)
    imported = await fill(images, tmp_path, percent=86)
    for index, image in enumerate(imported):
        await images.prepare(f"web-{index}", image)
    events: list[GcEvent] = []
    done = await ImageGarbageCollector(
        images, path=images.images_dir, report=events.append
    ).collect_once()
    assert done.removed == ()
    assert all(images.lookup(image.reference) is not None for image in imported)
    assert [(e.reason, e.warning) for e in events] == [(GcReason.FREE_DISK_SPACE_FAILED, True)]
    assert f"Attempted to free {done.bytes_to_free} bytes" in events[0].message
