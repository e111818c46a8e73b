"""One ImageService contract, run against every implementation (the fake and the real store).

Each implementation is driven through a `Flavor`: a service over one node, an image its
registry has and one it lacks, and a count of registry contacts. The real flavor is
`LocalImageService` over a docker-registry on loopback holding the busybox test image; the
fake one is `FakeImageService` with a `pull_errors` knob for the missing image. The assertions
are the same for both: what a pod worker relying on the service would observe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.images import (
    Image,
    ImageError,
    ImageService,
    NotPresent,
    PullError,
    PullOutcome,
    PullPolicy,
    PullRecord,
)
from nodeagent.images.fake import FakeImageService
from nodeagent.images.store import LocalImageService
from pilothouse.oci.reference import normalize
from pilothouse.oci.registry import push_archive
from pilothouse.oci.testimage import build_test_image
from tests.fixtures.images import image_archive
from tests.fixtures.registry import Registry, run_registry

_PUSHES = itertools.count(1)  # every push of the `changing` tag makes a new image


@dataclass
class Flavor:
    open: Callable[[float], ImageService]  # the node's service, with this gc grace (seconds)
    reopen: Callable[[ImageService, float], ImageService]  # a restarted agent's service
    reference: str  # a tag the registry has
    missing: str  # a tag the registry does not have
    contacts: Callable[[], int]  # times the registry was asked to resolve a reference
    changing: str  # a tag whose image `push` replaces
    push: Callable[[], Awaitable[None]]  # the registry names a new image for `changing`


def _fake_flavor() -> Flavor:
    made: list[FakeImageService] = []
    missing = "registry.test:5000/team/nothing:here"

    def open_(grace: float) -> ImageService:
        made.append(
            FakeImageService(pull_errors={missing: "manifest unknown"}, gc_grace_seconds=grace)
        )
        return made[-1]

    def reopen(service: ImageService, grace: float) -> ImageService:
        assert isinstance(service, FakeImageService)
        again = service.restarted()
        again.gc_grace_seconds = grace
        return again

    def contacts() -> int:
        return sum(len(s.pulls) for s in made)

    changing = "registry.test:5000/team/web:v1"

    async def push() -> None:
        made[-1].push(changing)

    return Flavor(
        open=open_,
        reopen=reopen,
        reference="registry.test:5000/team/busybox:stable",
        missing=missing,
        contacts=contacts,
        changing=changing,
        push=push,
    )


@pytest.fixture(scope="module")
def loaded_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the module, holding the busybox test image as busybox:stable."""
    workdir = tmp_path_factory.mktemp("contract-registry")
    archive = build_test_image(workdir / "busybox.tar")
    with run_registry(workdir / "registry") as registry:
        asyncio.run(push_archive(archive, f"{registry.address}/busybox:stable"))
        yield registry


def _store_flavor(registry: Registry, state: Path) -> Flavor:
    manifests = re.compile(r'"(GET|HEAD) /v2/[^ ]*/manifests/')

    def contacts() -> int:
        lines = registry.log_path.read_text().splitlines()
        return sum(1 for line in lines if manifests.search(line))

    changing = f"{registry.address}/web:v1"

    async def push() -> None:
        seed = next(_PUSHES)
        archive = image_archive(state.parent / f"web-{seed}.tar", tag=changing, seed=seed)
        await push_archive(archive, changing)

    return Flavor(
        open=lambda grace: LocalImageService(state, gc_grace_seconds=grace),
        reopen=lambda _service, grace: LocalImageService(state, gc_grace_seconds=grace),
        reference=f"{registry.address}/busybox:stable",
        missing=f"{registry.address}/nothing:here",
        contacts=contacts,
        changing=changing,
        push=push,
    )


@pytest.fixture(params=["fake", "store"])
def flavor(request: pytest.FixtureRequest, tmp_path: Path) -> Flavor:
    if request.param == "fake":
        return _fake_flavor()
    if os.geteuid() != 0:
        pytest.skip("unpacking image layers needs root")
    return _store_flavor(request.getfixturevalue("loaded_registry"), tmp_path / "state")


def _option(mount_options: tuple[str, ...], name: str) -> str:
    return next(o for o in mount_options if o.startswith(name + "=")).partition("=")[2]


async def test_a_pulled_image_is_present_by_tag_and_by_digest(flavor: Flavor) -> None:
    images = flavor.open(60)
    image = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    assert image.reference == normalize(flavor.reference)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image.digest), "no image id for the pod status"
    assert image.diff_ids, "an image without layers came back from a pull"
    again = await images.ensure(flavor.reference, PullPolicy.NEVER)
    assert again.digest == image.digest, "a pulled image is not found by policy Never"
    found = images.lookup(flavor.reference)
    assert found is not None and found.digest == image.digest
    repository = normalize(flavor.reference).rpartition(":")[0]
    contacted = flavor.contacts()
    pinned = await images.ensure(f"{repository}@{image.digest}", PullPolicy.IF_NOT_PRESENT)
    assert pinned.digest == image.digest, "the image pulled by tag is not found by its digest"
    assert pinned.reference == f"{repository}@{image.digest}"
    assert flavor.contacts() == contacted, "a present image was pulled again by its digest"


async def test_policy_never_neither_pulls_nor_finds_an_absent_image(flavor: Flavor) -> None:
    images = flavor.open(60)
    contacted = flavor.contacts()
    with pytest.raises(NotPresent) as err:
        await images.ensure(flavor.reference, PullPolicy.NEVER)
    assert str(err.value) == (
        f'Container image "{flavor.reference}" is not present with pull policy of Never'
    )
    assert flavor.contacts() == contacted, "policy Never contacted the registry"
    assert images.lookup(flavor.reference) is None


async def test_if_not_present_pulls_once_and_always_asks_every_time(flavor: Flavor) -> None:
    images = flavor.open(60)
    before = flavor.contacts()
    await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    one_pull = flavor.contacts() - before
    assert one_pull > 0, "an absent image was not pulled"
    await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    assert flavor.contacts() - before == one_pull, "IfNotPresent pulled a present image"
    await images.ensure(flavor.reference, PullPolicy.ALWAYS)
    assert flavor.contacts() - before == 2 * one_pull, "Always did not ask the registry"


async def test_concurrent_ensures_of_one_image_share_one_pull(flavor: Flavor) -> None:
    images = flavor.open(60)
    before = flavor.contacts()
    await images.ensure(flavor.reference, PullPolicy.ALWAYS)
    one_pull = flavor.contacts() - before
    before = flavor.contacts()
    results = await asyncio.gather(
        *(images.ensure(flavor.reference, PullPolicy.ALWAYS) for _ in range(8))
    )
    assert len({r.digest for r in results}) == 1
    assert flavor.contacts() - before == one_pull, (
        f"8 simultaneous ensures pulled {(flavor.contacts() - before) // one_pull} times"
    )


async def test_a_failed_pull_names_the_image_and_leaves_nothing(flavor: Flavor) -> None:
    images = flavor.open(60)
    with pytest.raises(PullError) as err:
        await images.ensure(flavor.missing, PullPolicy.IF_NOT_PRESENT)
    assert str(err.value).startswith(f'failed to pull image "{normalize(flavor.missing)}": '), (
        f"the pod status would not name the image: {err.value}"
    )
    assert re.search(r"manifest unknown|MANIFEST_UNKNOWN|NAME_UNKNOWN", str(err.value)), (
        f"the registry's reason is not in the message: {err.value}"
    )
    assert images.lookup(flavor.missing) is None


async def test_a_bad_name_is_a_pull_error(flavor: Flavor) -> None:
    images = flavor.open(60)
    contacted = flavor.contacts()
    with pytest.raises(PullError, match="invalid image name 'Web Server:1'"):
        await images.ensure("Web Server:1", PullPolicy.IF_NOT_PRESENT)
    assert flavor.contacts() == contacted, "a bad name was sent to a registry"


async def test_prepare_describes_one_overlay_per_container_over_shared_layers(
    flavor: Flavor,
) -> None:
    images = flavor.open(60)
    image = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    first = await images.prepare("web-0", image)
    second = await images.prepare("web-1", image)
    for mounts in (first, second):
        assert len(mounts) == 1, mounts
        assert (mounts[0].type, mounts[0].source, mounts[0].target) == ("overlay", "overlay", "/")
    lower = _option(first[0].options, "lowerdir")
    assert lower == _option(second[0].options, "lowerdir"), "containers got different layers"
    assert len(lower.split(":")) == len(set(image.diff_ids))
    uppers = {_option(m[0].options, "upperdir") for m in (first, second)}
    works = {_option(m[0].options, "workdir") for m in (first, second)}
    assert len(uppers) == 2 and len(works) == 2, "two containers share a writable dir"


async def test_prepare_refuses_bad_keys_and_images_without_layers(flavor: Flavor) -> None:
    images = flavor.open(60)
    image = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    for key in ("", "a/b", ".", ".."):
        with pytest.raises(ImageError, match="invalid container key"):
            await images.prepare(key, image)
        with pytest.raises(ImageError, match="invalid container key"):
            await images.release(key)
    empty = dataclasses.replace(image, diff_ids=())
    with pytest.raises(ImageError, match="has no layers: nothing to run"):
        await images.prepare("web-0", empty)


async def test_release_is_idempotent(flavor: Flavor) -> None:
    images = flavor.open(60)
    image = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    await images.prepare("web-0", image)
    await images.release("web-0")
    await images.release("web-0")
    await images.release("never-prepared")


async def test_gc_keeps_images_in_use_and_removes_the_rest(flavor: Flavor) -> None:
    images = flavor.open(0)
    image = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    await images.prepare("web-0", image)
    assert await images.gc() == [], "gc removed an image a container uses"
    assert images.lookup(flavor.reference) is not None
    await images.release("web-0")
    assert await images.gc() == [image.digest]
    assert images.lookup(flavor.reference) is None, "a collected image is still found"
    with pytest.raises(NotPresent):
        await images.ensure(flavor.reference, PullPolicy.NEVER)
    with pytest.raises(ImageError, match="no longer on the node"):
        await images.prepare("web-1", image)
    assert await images.gc() == []


async def test_gc_spares_an_image_ensured_within_the_grace_period(flavor: Flavor) -> None:
    images = flavor.open(60)
    image: Image = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    assert await images.gc() == [], "gc removed an image pulled a moment ago, before its prepare"
    assert (await images.prepare("web-0", image))[0].type == "overlay"


async def test_a_restarted_service_knows_which_images_are_in_use(flavor: Flavor) -> None:
    first = flavor.open(60)
    image = await first.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    await first.prepare("web-0", image)
    restarted = flavor.reopen(first, 0)
    assert await restarted.gc() == [], "after a restart, gc removed an image in use"
    found = await restarted.ensure(flavor.reference, PullPolicy.NEVER)
    assert found.digest == image.digest, "a restarted service lost a present image"
    await restarted.release("web-0")
    assert await restarted.gc() == [image.digest]


async def test_always_fetches_only_when_the_registry_names_another_digest(flavor: Flavor) -> None:
    images = flavor.open(60)
    name = normalize(flavor.changing)
    await flavor.push()
    first = await images.ensure(flavor.changing, PullPolicy.ALWAYS)
    assert list(images.pull_records)[-1:] == [PullRecord(name, first.digest, PullOutcome.PULLED)]
    before = flavor.contacts()
    again = await images.ensure(flavor.changing, PullPolicy.ALWAYS)
    assert flavor.contacts() == before + 1, "Always did not ask the registry once"
    assert again.digest == first.digest
    assert list(images.pull_records)[-1:] == [
        PullRecord(name, first.digest, PullOutcome.UNCHANGED)
    ], "Always pulled again although the registry's digest had not changed"
    await flavor.push()
    changed = await images.ensure(flavor.changing, PullPolicy.ALWAYS)
    assert changed.digest != first.digest, "Always kept the old image after a new push"
    assert list(images.pull_records)[-1:] == [
        PullRecord(name, changed.digest, PullOutcome.PULLED)
    ], "the changed digest was not pulled"
    found = images.lookup(flavor.changing)
    assert found is not None and found.digest == changed.digest


async def test_images_lists_each_image_with_names_size_and_users(flavor: Flavor) -> None:
    images = flavor.open(60)
    image = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    await images.prepare("web-0", image)
    listed = {i.digest: i for i in await images.images()}
    assert image.digest in listed, "a pulled image is not listed"
    entry = listed[image.digest]
    assert entry.names == (normalize(flavor.reference),)
    assert entry.size > 0, "a listed image has no size"
    assert entry.users == ("web-0",), "the container using the image is not listed"
    await images.release("web-0")
    listed = {i.digest: i for i in await images.images()}
    assert listed[image.digest].users == ()


async def test_gc_with_a_byte_target_removes_least_recently_used_first(flavor: Flavor) -> None:
    images = flavor.open(0)
    used = await images.ensure(flavor.reference, PullPolicy.IF_NOT_PRESENT)
    await flavor.push()
    oldest = await images.ensure(flavor.changing, PullPolicy.ALWAYS)
    await flavor.push()
    newer = await images.ensure(flavor.changing, PullPolicy.ALWAYS)
    await images.prepare("web-0", used)
    assert len({used.digest, oldest.digest, newer.digest}) == 3
    assert await images.gc(bytes_to_free=1) == [oldest.digest], (
        "gc did not remove the least recently used image alone"
    )
    assert images.lookup(flavor.changing) is not None, "gc removed more than it had to"
    assert await images.gc(bytes_to_free=1 << 40) == [newer.digest]
    assert images.lookup(flavor.reference) is not None, "gc removed an image in use"
    assert [i.digest for i in await images.images()] == [used.digest]
