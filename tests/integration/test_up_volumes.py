"""etcd's file system of its own under `pilothouse up` (issue 11): made once, kept with its data
across restarts, and an older data dir's etcd data moved onto it (as root, loop devices)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pilothouse.cli.cluster import volumes

pytestmark = [pytest.mark.root]

MiB = 1024 * 1024


@pytest.fixture
def scratch(tmp_path: Path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root and mkfs.ext4")
    yield tmp_path
    for point in sorted(tmp_path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if point.is_dir() and volumes.is_mounted(point):
            volumes.release(point)


def test_the_etcd_dir_gets_a_file_system_of_its_own_that_keeps_its_data(scratch: Path) -> None:
    image, etcd = scratch / "controlplane" / "etcd.img", scratch / "controlplane" / "etcd"
    volumes.ensure(image=image, mount_point=etcd, size_bytes=64 * MiB)
    assert volumes.is_mounted(etcd)
    assert os.stat(etcd).st_dev != os.stat(scratch).st_dev, "etcd shares the node's file system"
    assert image.stat().st_blocks * 512 < 32 * MiB, "the image is not sparse"
    (etcd / "member").mkdir()
    (etcd / "member" / "db").write_bytes(b"data")
    volumes.ensure(image=image, mount_point=etcd, size_bytes=64 * MiB)  # idempotent
    volumes.release(etcd)
    assert not volumes.is_mounted(etcd) and not (etcd / "member").exists()
    volumes.ensure(image=image, mount_point=etcd, size_bytes=64 * MiB)  # `up` again
    assert (etcd / "member" / "db").read_bytes() == b"data", "etcd's data was lost"


def test_an_older_etcd_dir_moves_onto_the_new_file_system(scratch: Path) -> None:
    etcd = scratch / "etcd"
    (etcd / "member" / "wal").mkdir(parents=True)
    (etcd / "member" / "wal" / "0.wal").write_bytes(b"log")
    volumes.ensure(image=scratch / "etcd.img", mount_point=etcd, size_bytes=64 * MiB)
    assert volumes.is_mounted(etcd)
    assert (etcd / "member" / "wal" / "0.wal").read_bytes() == b"log"
    volumes.release(etcd)
    assert not any(etcd.iterdir()), "the old copy was left on the node's disk"
