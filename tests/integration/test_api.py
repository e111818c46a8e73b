"""The ControlPlane gRPC API as a client sees it, on a real control plane (embedded etcd) and
on the in-process one over the memory store: the same answers from both."""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from controlplane.objects import CONTROLLER_ANNOTATION_PREFIXES as CONTROLLER_ANNOTATIONS
from pilothouse import kinds
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2
from tests import factories

FIELD_ERRORS_KEY = "pilothouse-field-errors-bin"

# A Deployment as read from a manifest (apiVersion and kind set), labelled app=<name>.
deployment = functools.partial(factories.deployment, typed=True)


@pytest.fixture(params=["etcd", "memory"])
def connect(request: pytest.FixtureRequest) -> Callable[[], grpc.aio.Channel]:
    """A real control plane with its embedded etcd (mutual TLS, as the admin), or the
    in-process one over memory (plaintext)."""
    if request.param == "etcd":
        return request.getfixturevalue("shared_control_plane").channel
    address = request.getfixturevalue("memory_control_plane").address
    return lambda: grpc.aio.insecure_channel(address)


@pytest.fixture
async def stub(connect: Callable[[], grpc.aio.Channel]) -> AsyncIterator[api_grpc.ControlPlaneStub]:
    async with connect() as channel:
        yield api_grpc.ControlPlaneStub(channel)


@pytest.fixture
async def ns(stub: api_grpc.ControlPlaneStub) -> str:
    """A namespace of this test's own, so tests sharing a control plane stay apart (created
    first: the API refuses objects in a namespace that does not exist, as Kubernetes does)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await create_namespace(stub, name)
    return name


async def create_namespace(stub: api_grpc.ControlPlaneStub, name: str) -> None:
    namespace = objects_pb2.Namespace()
    namespace.metadata.name = name
    await stub.Apply(api.ApplyRequest(object=kinds.wrap(namespace)), timeout=30)


async def apply(stub: api_grpc.ControlPlaneStub, obj) -> api.ApplyResponse:
    return await stub.Apply(api.ApplyRequest(object=kinds.wrap(obj)), timeout=30)


async def get(stub: api_grpc.ControlPlaneStub, ns: str, name: str) -> objects_pb2.Deployment:
    found = await stub.Get(api.GetRequest(kind="deployments", namespace=ns, name=name), timeout=30)
    return found.deployment


async def versions_after(
    stub: api_grpc.ControlPlaneStub,
    ns: str,
    *,
    since: objects_pb2.Deployment,
    until: objects_pb2.Deployment,
) -> list[objects_pb2.Deployment]:
    """Each version of the only Deployment in `ns` stored after `since` up to `until`, in
    order, as a watch from `since`'s resourceVersion replays them."""
    found: list[objects_pb2.Deployment] = []
    last = until.metadata.resource_version
    if since.metadata.resource_version == last:
        return found
    stream = stub.Watch(
        api.WatchRequest(
            kind="deployments", namespace=ns, resource_version=since.metadata.resource_version
        )
    )
    try:
        while not found or found[-1].metadata.resource_version != last:
            event = await asyncio.wait_for(stream.read(), 20)
            found.append(event.object.deployment)
            assert int(found[-1].metadata.resource_version) <= int(last), (
                f"the watch skipped resourceVersion {last}"
            )
    finally:
        stream.cancel()
    return found


def without_controller_writes(d: objects_pb2.Deployment) -> objects_pb2.Deployment:
    """The Deployment without what controllers write (status, controller-owned annotations)
    and without its resourceVersion: what an apply would have to change to write."""
    left = objects_pb2.Deployment()
    left.CopyFrom(d)
    left.ClearField("status")
    left.metadata.resource_version = ""
    for key in [k for k in left.metadata.annotations if k.startswith(CONTROLLER_ANNOTATIONS)]:
        del left.metadata.annotations[key]
    return left


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_apply_creates_then_changes_nothing_then_configures(
    stub: api_grpc.ControlPlaneStub, ns: str
) -> None:
    created = await apply(stub, deployment(name="web", namespace=ns))
    assert created.result == api.ApplyResponse.CREATED
    first = created.object.deployment
    assert first.metadata.generation == 1
    assert first.metadata.uid and first.metadata.resource_version
    assert first.spec.replicas == 1, "Kubernetes' default of 1 replica was not applied"
    assert first.spec.strategy.type == "RollingUpdate"

    again = await apply(stub, deployment(name="web", namespace=ns))
    assert again.result == api.ApplyResponse.UNCHANGED, "re-applying the same manifest changed it"
    stored = await get(stub, ns, "web")
    # The deployment controller writes this Deployment's status and revision annotations all
    # along, moving its resourceVersion: the store's own history tells its writes from ours.
    history = [first, *await versions_after(stub, ns, since=first, until=stored)]
    assert again.object.deployment in history, (
        "an unchanged apply answered with a version the store never held"
    )
    for before, after in itertools.pairwise(history):
        assert without_controller_writes(after) == without_controller_writes(before), (
            "an unchanged apply still wrote to the store"
        )

    relabelled = await apply(
        stub, deployment(name="web", namespace=ns, labels={"app": "web", "tier": "front"})
    )
    assert relabelled.result == api.ApplyResponse.CONFIGURED
    assert relabelled.object.deployment.metadata.generation == 1, (
        "a label change bumped the generation although the spec did not change"
    )

    new_image = await apply(stub, deployment(name="web", namespace=ns, image="busybox:1.36"))
    assert new_image.result == api.ApplyResponse.CONFIGURED
    after = await get(stub, ns, "web")
    assert after.metadata.generation == 2, "a spec change did not bump the generation"
    assert after.spec.template.spec.containers[0].image == "busybox:1.36"
    assert after.metadata.uid == first.metadata.uid
    assert after.metadata.creation_timestamp == first.metadata.creation_timestamp


async def test_dry_run_writes_nothing(stub: api_grpc.ControlPlaneStub, ns: str) -> None:
    response = await stub.Apply(
        api.ApplyRequest(object=kinds.wrap(deployment(name="web", namespace=ns)), dry_run=True),
        timeout=30,
    )
    assert response.result == api.ApplyResponse.CREATED
    error = await refused(get(stub, ns, "web"))
    assert error.code() == grpc.StatusCode.NOT_FOUND, "a dry-run apply created the object"


async def test_get_and_list_with_selectors(stub: api_grpc.ControlPlaneStub, ns: str) -> None:
    await apply(stub, deployment(name="a", namespace=ns, labels={"app": "a", "tier": "front"}))
    await apply(stub, deployment(name="b", namespace=ns, labels={"app": "b", "tier": "back"}))
    other_ns = f"{ns}-other"
    await create_namespace(stub, other_ns)
    await apply(
        stub, deployment(name="c", namespace=other_ns, labels={"app": "c", "tier": "front"})
    )

    async def names(**request: str) -> list[str]:
        listing = await stub.List(api.ListRequest(kind="deploy", **request), timeout=30)
        assert int(listing.resource_version) > 0
        return sorted(item.deployment.metadata.name for item in listing.items)

    assert await names(namespace=ns) == ["a", "b"]
    assert await names(namespace=ns, label_selector="tier=front") == ["a"]
    assert await names(namespace=ns, label_selector="app in (a,b),tier!=front") == ["b"]
    assert await names(namespace=ns, field_selector="metadata.name=b") == ["b"]
    everywhere = await names(label_selector="tier=front")
    assert "a" in everywhere and "c" in everywhere, "List without namespace missed namespaces"

    got = await get(stub, other_ns, "c")
    assert got.metadata.labels["tier"] == "front"
    missing = await refused(get(stub, ns, "nope"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert 'deployments "nope"' in missing.details()

    bad_selector = await refused(
        stub.List(api.ListRequest(kind="deployments", label_selector="app in ("), timeout=30)
    )
    assert bad_selector.code() == grpc.StatusCode.INVALID_ARGUMENT
    unknown = await refused(stub.List(api.ListRequest(kind="gizmos"), timeout=30))
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gizmos" in unknown.details()


async def test_delete(stub: api_grpc.ControlPlaneStub, ns: str) -> None:
    created = (await apply(stub, deployment(name="web", namespace=ns))).object.deployment
    await apply(stub, deployment(name="web", namespace=ns, image="busybox:1.36"))

    stale = await refused(
        stub.Delete(
            api.DeleteRequest(
                kind="deployments",
                namespace=ns,
                name="web",
                resource_version=created.metadata.resource_version,
            ),
            timeout=30,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED, "a delete at a stale version went through"

    deleted = await stub.Delete(
        api.DeleteRequest(kind="deployments", namespace=ns, name="web"), timeout=30
    )
    assert deleted.object.deployment.metadata.uid == created.metadata.uid
    gone = await refused(get(stub, ns, "web"))
    assert gone.code() == grpc.StatusCode.NOT_FOUND, "the deployment is still there after delete"
    twice = await refused(
        stub.Delete(api.DeleteRequest(kind="deployments", namespace=ns, name="web"), timeout=30)
    )
    assert twice.code() == grpc.StatusCode.NOT_FOUND


async def test_apply_at_a_stale_version_is_aborted(
    stub: api_grpc.ControlPlaneStub, ns: str
) -> None:
    first = (await apply(stub, deployment(name="web", namespace=ns))).object.deployment
    await apply(stub, deployment(name="web", namespace=ns, image="busybox:1.36"))
    stale = deployment(name="web", namespace=ns, image="busybox:1.37")
    stale.metadata.resource_version = first.metadata.resource_version
    error = await refused(apply(stub, stale))
    assert error.code() == grpc.StatusCode.ABORTED
    assert "modified" in error.details()
    assert (await get(stub, ns, "web")).spec.template.spec.containers[0].image == "busybox:1.36"


async def test_invalid_manifest_names_every_field_and_writes_nothing(
    stub: api_grpc.ControlPlaneStub, ns: str
) -> None:
    bad = deployment(name="Bad_Name", namespace=ns)
    bad.spec.replicas = -1
    bad.spec.template.spec.containers[0].image = ""
    error = await refused(apply(stub, bad))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    for field in ("metadata.name", "spec.replicas", "spec.template.spec.containers[0].image"):
        assert field in error.details(), f"the error does not name {field}: {error.details()}"
    carried = dict(error.trailing_metadata() or ())
    details = api.FieldErrors.FromString(carried[FIELD_ERRORS_KEY])
    assert {"metadata.name", "spec.replicas"} <= {e.field for e in details.errors}
    listing = await stub.List(api.ListRequest(kind="deployments", namespace=ns), timeout=30)
    assert not listing.items, "an invalid manifest was written"


async def test_scale(stub: api_grpc.ControlPlaneStub, ns: str) -> None:
    await apply(stub, deployment(name="web", namespace=ns))
    scaled = await stub.Scale(
        api.ScaleRequest(kind="deployment", namespace=ns, name="web", replicas=5), timeout=30
    )
    assert scaled.deployment.spec.replicas == 5
    assert (await get(stub, ns, "web")).metadata.generation == 2
    negative = await refused(
        stub.Scale(
            api.ScaleRequest(kind="deployment", namespace=ns, name="web", replicas=-2), timeout=30
        )
    )
    assert negative.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = await refused(
        stub.Scale(api.ScaleRequest(kind="deployment", namespace=ns, name="x", replicas=1))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def _next(stream, seen: dict[str, bytes] | None = None) -> api.WatchEvent:
    """The next watch event that changes what a person applied (spec, labels).

    The real control plane runs controllers that write status and annotations on the same
    Deployments; those MODIFIED events are skipped here. A watch that goes quiet fails the
    test instead of hanging it.
    """
    seen = {} if seen is None else seen
    while True:
        event = await asyncio.wait_for(stream.read(), 20)
        d = event.object.deployment
        applied = _applied(d)
        before = seen.get(d.metadata.name)
        seen[d.metadata.name] = applied
        if event.type == api.WatchEvent.MODIFIED and before == applied:
            continue
        return event


def _applied(d: objects_pb2.Deployment) -> bytes:
    """What a person applied to the Deployment (spec, labels), as comparable bytes."""
    return (
        d.spec.SerializeToString(deterministic=True)
        + repr(sorted(d.metadata.labels.items())).encode()
    )


async def test_watch_sends_current_state_then_changes(
    stub: api_grpc.ControlPlaneStub, ns: str
) -> None:
    await apply(stub, deployment(name="web", namespace=ns))
    stream = stub.Watch(api.WatchRequest(kind="deployments", namespace=ns))
    seen: dict[str, bytes] = {}
    try:
        first = await _next(stream, seen)
        assert first.type == api.WatchEvent.ADDED
        assert first.object.deployment.metadata.name == "web"

        await apply(stub, deployment(name="web", namespace=ns, image="busybox:1.36"))
        changed = await _next(stream, seen)
        assert changed.type == api.WatchEvent.MODIFIED
        assert changed.object.deployment.spec.template.spec.containers[0].image == "busybox:1.36"

        await apply(stub, deployment(name="api", namespace=ns))
        added = await _next(stream, seen)
        assert (added.type, added.object.deployment.metadata.name) == (api.WatchEvent.ADDED, "api")

        await stub.Delete(api.DeleteRequest(kind="deployments", namespace=ns, name="web"))
        deleted = await _next(stream, seen)
        assert deleted.type == api.WatchEvent.DELETED
        assert deleted.object.deployment.metadata.name == "web"
    finally:
        stream.cancel()


async def test_watch_from_a_version_and_with_a_selector(
    stub: api_grpc.ControlPlaneStub, ns: str
) -> None:
    web = await apply(
        stub, deployment(name="web", namespace=ns, labels={"app": "web", "tier": "front"})
    )
    since = web.object.deployment.metadata.resource_version
    await apply(stub, deployment(name="db", namespace=ns, labels={"app": "db", "tier": "back"}))
    await apply(stub, deployment(name="web", namespace=ns, labels={"app": "web", "tier": "back"}))

    stream = stub.Watch(
        api.WatchRequest(kind="deployments", namespace=ns, label_selector="tier=back")
    )
    seen: dict[str, bytes] = {}
    try:
        initial = sorted(
            [(await _next(stream, seen)).object.deployment.metadata.name for _ in range(2)]
        )
        assert initial == ["db", "web"]
        # web leaves the selection: the client is told it is gone from its view.
        await apply(
            stub, deployment(name="web", namespace=ns, labels={"app": "web", "tier": "front"})
        )
        left = await _next(stream, seen)
        assert (left.type, left.object.deployment.metadata.name) == (api.WatchEvent.DELETED, "web")
    finally:
        stream.cancel()

    replay = stub.Watch(api.WatchRequest(kind="deployments", namespace=ns, resource_version=since))
    # web as it was at `since`: the controller's status writes on it that the replay holds
    # (before db was even applied, under load) are not changes a person made.
    replayed = {"web": _applied(web.object.deployment)}
    try:
        events = [await _next(replay, replayed) for _ in range(3)]
        assert [(e.type, e.object.deployment.metadata.name) for e in events] == [
            (api.WatchEvent.ADDED, "db"),
            (api.WatchEvent.MODIFIED, "web"),
            (api.WatchEvent.MODIFIED, "web"),
        ], "a watch from a resourceVersion did not replay the changes after it"
    finally:
        replay.cancel()


async def test_logs_of_a_missing_pod_are_not_found(stub: api_grpc.ControlPlaneStub) -> None:
    stream = stub.PodLogs(api.PodLogsRequest(namespace="default", pod="x"))
    error = await refused(stream.read())
    assert error.code() == grpc.StatusCode.NOT_FOUND, "logs of a pod that does not exist"
    assert 'pods "x"' in (error.details() or "")
