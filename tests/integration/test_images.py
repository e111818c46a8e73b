"""Images on a node, end to end: push to a real docker-registry, pull, share, import, collect."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from nodeagent.images import NotPresent, PullError, PullPolicy
from nodeagent.images.store import LocalImageService
from nodeagent.runtime import Mount
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.oci.registry import push_archive
from pilothouse.oci.testimage import build_layer, build_test_image
from tests.fixtures.registry import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking image layers needs root")


@pytest.fixture(scope="session")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_image(tmp_path_factory.mktemp("image") / "busybox.tar")


async def pushed(registry: Registry, archive: Path, name: str = "busybox:stable") -> str:
    config = RegistriesConfig.from_dict(
        {
            "configs": {
                registry.address: {
                    "auth": {"username": registry.username, "password": registry.password}
                }
            }
        }
        if registry.username
        else {}
    )
    await push_archive(archive, f"{registry.address}/{name}", config=config)
    return f"{registry.address}/{name}"


def layer_blob(registry: Registry) -> Path:
    """The registry's stored file of the (only) layer: the largest blob."""
    blobs = list((registry.root / "docker/registry/v2/blobs").rglob("data"))
    return max(blobs, key=lambda p: p.stat().st_size)


async def test_pull_from_a_registry_gives_a_runnable_rootfs(
    registry: Registry, test_image: Path, tmp_path: Path
) -> None:
    ref = await pushed(registry, test_image)
    images = LocalImageService(tmp_path / "state")
    image = await images.ensure(ref, PullPolicy.IF_NOT_PRESENT)
    assert image.config.cmd == ("sh",), "the image's Cmd did not come through the pull"
    assert any(e.startswith("PATH=") for e in image.config.env)
    layer = images.layers.path(image.diff_ids[0])
    assert (layer / "bin" / "busybox").is_file(), "the pulled layer lacks /bin/busybox"
    assert os.readlink(layer / "bin" / "sh") == "/bin/busybox"
    again = await images.ensure(ref, PullPolicy.NEVER)
    assert again.digest == image.digest, "a pulled image is not found by policy Never"


async def test_mirror_serves_docker_hub_names(
    registry: Registry, test_image: Path, tmp_path: Path
) -> None:
    await pushed(registry, test_image, "library/busybox:stable")
    config = RegistriesConfig.from_dict(
        {"mirrors": {"docker.io": {"endpoint": [registry.url]}}, "disableDefaultEndpoint": True}
    )
    images = LocalImageService(tmp_path / "state", registries=config)
    image = await images.ensure("busybox:stable", PullPolicy.ALWAYS)
    assert image.reference == "docker.io/library/busybox:stable"


async def test_tampered_blob_is_refused(
    registry: Registry, test_image: Path, tmp_path: Path
) -> None:
    ref = await pushed(registry, test_image)
    blob = layer_blob(registry)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    images = LocalImageService(tmp_path / "state")
    with pytest.raises(PullError, match="tampered") as err:
        await images.ensure(ref, PullPolicy.IF_NOT_PRESENT)
    assert ref in str(err.value), "the pull error does not name the image"
    assert images.lookup(ref) is None, "a tampered image was recorded as present"
    assert not images.layers.diff_ids(), "a tampered layer was unpacked"
    assert not any(images.content.ingest.iterdir()), "the tampered download was left behind"


async def test_missing_image_reports_the_registry_message(
    registry: Registry, tmp_path: Path
) -> None:
    images = LocalImageService(tmp_path / "state")
    with pytest.raises(PullError, match=r"MANIFEST_UNKNOWN|NAME_UNKNOWN"):
        await images.ensure(f"{registry.address}/nothing:here", PullPolicy.ALWAYS)


async def test_policy_never_does_not_pull(tmp_path: Path) -> None:
    images = LocalImageService(tmp_path / "state")
    with pytest.raises(NotPresent) as err:
        await images.ensure("busybox:stable", PullPolicy.NEVER)
    assert str(err.value) == (
        'Container image "busybox:stable" is not present with pull policy of Never'
    )


async def test_concurrent_pulls_of_one_image_collapse(
    registry: Registry, test_image: Path, tmp_path: Path
) -> None:
    ref = await pushed(registry, test_image)
    images = LocalImageService(tmp_path / "state")
    results = await asyncio.gather(*(images.ensure(ref, PullPolicy.ALWAYS) for _ in range(8)))
    assert len({r.digest for r in results}) == 1
    layer = json.loads(images.content.read(results[0].digest))["layers"][0]["digest"]
    assert registry.blob_gets(layer) == 1, (
        f"8 simultaneous pulls downloaded the layer {registry.blob_gets(layer)} times"
    )
    await images.ensure(ref, PullPolicy.ALWAYS)
    assert registry.blob_gets(layer) == 1, "policy Always downloaded an unchanged layer again"


async def test_basic_auth_registry(
    auth_registry: Registry, test_image: Path, tmp_path: Path
) -> None:
    ref = await pushed(auth_registry, test_image)
    anonymous = LocalImageService(tmp_path / "anon")
    with pytest.raises(PullError, match="authentication required"):
        await anonymous.ensure(ref, PullPolicy.IF_NOT_PRESENT)
    config = RegistriesConfig.from_dict(
        {
            "configs": {
                auth_registry.address: {"auth": {"username": "pilot", "password": "s3cret-pass"}}
            }
        }
    )
    images = LocalImageService(tmp_path / "state", registries=config)
    assert (await images.ensure(ref, PullPolicy.IF_NOT_PRESENT)).config.cmd == ("sh",)


def run_in_overlay(mount: Mount, mnt: Path, script: str) -> str:
    """Mount the described overlay, run a shell script chrooted in it, unmount."""
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", mount.type, mount.source, "-o", ",".join(mount.options), str(mnt)],
        check=True,
    )
    try:
        return subprocess.run(
            ["chroot", str(mnt), "/bin/sh", "-c", script],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


async def test_twenty_containers_share_the_layer_directories(
    tmp_path: Path, test_image: Path
) -> None:
    images = LocalImageService(tmp_path / "state")
    (image,) = await images.import_archive(test_image)
    layer = images.layers.path(image.diff_ids[0])
    files_before = sum(1 for _ in layer.rglob("*"))
    mounts = [await images.prepare(f"c{i}", image) for i in range(20)]
    lowers = {next(o for o in ms[0].options if o.startswith("lowerdir=")) for ms in mounts}
    assert lowers == {f"lowerdir={layer}"}, f"containers got different lower dirs: {lowers}"
    uppers = {next(o for o in ms[0].options if o.startswith("upperdir=")) for ms in mounts}
    assert len(uppers) == 20, "containers share an upper dir"
    assert sum(1 for _ in layer.rglob("*")) == files_before
    copied = sum(1 for _ in (tmp_path / "state" / "containers").rglob("busybox"))
    assert copied == 0, "preparing containers copied image files"
    assert sorted(images.in_use()[image.digest]) == sorted(f"c{i}" for i in range(20))

    out = run_in_overlay(mounts[0][0], tmp_path / "mnt", "echo hi > /tmp/x; cat /etc/passwd")
    assert out.startswith("root:x:0:0"), "a shell in the overlay rootfs did not run"
    assert (tmp_path / "state/containers/c0/upper/tmp/x").exists(), "writes did not go to upper"
    assert not (layer / "tmp" / "x").exists(), "a container wrote into a shared layer"


async def test_gc_keeps_images_in_use_across_restarts(tmp_path: Path, test_image: Path) -> None:
    state = tmp_path / "state"
    first = LocalImageService(state)
    (image,) = await first.import_archive(test_image)
    await first.prepare("web-0", image)

    restarted = LocalImageService(state, gc_grace_seconds=0)
    assert await restarted.gc() == [], "gc removed an image a container still uses"
    assert restarted.lookup("busybox:stable") is not None
    await restarted.release("web-0")
    assert await restarted.gc() == [image.digest]
    assert restarted.lookup("busybox:stable") is None
    assert not restarted.layers.diff_ids(), "gc left unused layers behind"
    assert not restarted.content.digests(), "gc left unused blobs behind"
    assert not (state / "containers" / "web-0").exists(), "release left the container's dirs"


def docker_save_archive(path: Path, tag: str) -> Path:
    """A `docker save`-shaped archive of the busybox layer."""
    import hashlib

    layer = build_layer()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = json.dumps(
        [{"Config": "cfg.json", "RepoTags": [tag], "Layers": ["abc/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("cfg.json", config),
            ("abc/layer.tar", layer),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


async def test_import_dir_loads_oci_and_docker_save_archives(tmp_path: Path) -> None:
    images = LocalImageService(tmp_path / "state")
    build_test_image(images.import_path / "oci.tar", tag="example.com/team/tool:v1")
    docker_save_archive(images.import_path / "saved.tar", "legacy:1.0")
    (images.import_path / "broken.tar").write_bytes(b"not a tar")
    loaded = await images.import_dir()
    assert {i.reference for i in loaded} == {
        "example.com/team/tool:v1",
        "docker.io/library/legacy:1.0",
    }
    image = await images.ensure("legacy:1.0", PullPolicy.NEVER)
    assert (images.layers.path(image.diff_ids[0]) / "bin/busybox").is_file()
    assert await images.import_dir() == [], "unchanged archives were imported again"

    watcher = asyncio.create_task(images.watch_imports(interval=0.05))
    try:
        build_test_image(images.import_path / "later.tar", tag="late:arrival")
        for _ in range(200):
            if images.lookup("late:arrival"):
                break
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    assert images.lookup("late:arrival") is not None, "an archive dropped later was not imported"
