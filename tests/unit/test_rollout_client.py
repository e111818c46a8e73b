"""The client-side rollout verbs (pilothouse.cli.rollout) against the real API servicers and the
deployment controller over one in-memory store, with a hollow agent making pods Ready."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controlplane.api.server import ApiServer
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from pilothouse.cli import diff, rollout
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.rollout_support import D, Plane, eventually, make_deployment


def deployment_with(
    *, generation: int = 2, observed: int = 2, desired: int = 3, **status: int
) -> objects_pb2.Deployment:
    d = factories.deployment(replicas=desired)
    d.metadata.generation = generation
    d.status.observed_generation = observed
    for field, value in status.items():
        setattr(d.status, field, value)
    return d


@pytest.mark.parametrize(
    ("deployment", "message", "done"),
    [
        (
            deployment_with(generation=3),
            "Waiting for deployment spec update to be observed...",
            False,
        ),
        (
            deployment_with(replicas=3, updated_replicas=1),
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been '
            "updated...",
            False,
        ),
        (
            deployment_with(replicas=4, updated_replicas=3, available_replicas=3),
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending '
            "termination...",
            False,
        ),
        (
            deployment_with(replicas=3, updated_replicas=3, available_replicas=2),
            'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are '
            "available...",
            False,
        ),
        (
            deployment_with(replicas=3, updated_replicas=3, available_replicas=3),
            'deployment "web" successfully rolled out',
            True,
        ),
    ],
)
def test_status_messages_are_kubectls(
    deployment: objects_pb2.Deployment, message: str, done: bool
) -> None:
    status = rollout.status_of(deployment)
    assert (status.message, status.done) == (message, done)


def test_status_past_the_deadline_is_a_failure() -> None:
    d = deployment_with(replicas=3, updated_replicas=1)
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    with pytest.raises(rollout.RolloutFailed, match='deployment "web" exceeded its progress'):
        rollout.status_of(d)


def test_set_image_of_an_unknown_container_is_refused() -> None:
    d = make_deployment(replicas=1)
    with pytest.raises(rollout.RolloutError, match='unable to find container named "nope"'):
        rollout.with_images(d, {"nope": "web:v2"})
    assert rollout.parse_images(["main=web:v2"]) == {"main": "web:v2"}
    with pytest.raises(rollout.RolloutError):
        rollout.parse_images(["main"])


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Plane, Client]]:
    store = MemoryStore()
    api = ApiServer(objects=ObjectStore(store), listen="127.0.0.1:0")
    address = await api.start()
    try:
        async with Plane(store) as plane, Client(address) as client:
            yield plane, client
    finally:
        await api.stop()


async def test_set_image_history_undo_to_revision_1_and_status(
    cluster: tuple[Plane, Client],
) -> None:
    plane, client = cluster
    await client.apply(make_deployment(replicas=2))
    seen: list[str] = []
    done = await rollout.watch_status(client, "web", give_up_after=10, progress=seen.append)  # type: ignore[arg-type]
    assert done.message == 'deployment "web" successfully rolled out'
    for image in ("web:v2", "web:v3"):
        assert await rollout.set_image(client, "web", {"main": image}) == (
            "deployment.apps/web image updated"
        )
        await plane.rolled_out(2, image, f"set image {image} never rolled out")
    plane.resolver.digests["web:v1"] = D[9]  # the tag moves
    deployment, replicasets = await rollout.read(client, "web")
    rows = rollout.history_rows(deployment, replicasets)
    assert [r.revision for r in rows] == [1, 2, 3]
    assert rows[0].images == (("main", f"web@{D[1]}", "web:v1"),)
    table = rollout.history_table("web", rows)
    assert table.splitlines()[2].split() == ["REVISION", "CHANGE-CAUSE", "IMAGES"]
    assert f"main=web@{D[1]} (web:v1)" in table
    assert "web:v1" in rollout.revision_detail("web", replicasets[0])

    assert await rollout.undo(client, "web", to_revision=1) == "deployment.apps/web rolled back"
    await rollout.watch_status(client, "web", give_up_after=10)
    await plane.rolled_out(2, "web:v1", "undo to revision 1 never rolled out")
    images = {p.spec.containers[0].image for p in await plane.pods()}
    assert images == {f"web@{D[1]}"}, "undo did not run revision 1's own digest"
    assert "skipped rollback" in await rollout.undo(client, "web", to_revision=4)
    # Plain undo goes to the previous revision (3: web:v3).
    await rollout.undo(client, "web")
    await plane.rolled_out(2, "web:v3", "undo to the previous revision never rolled out")


async def test_pause_resume_restart_and_diff(cluster: tuple[Plane, Client]) -> None:
    plane, client = cluster
    await client.apply(make_deployment(replicas=2))
    await plane.rolled_out(2, "web:v1", "the first rollout never completed")
    assert await rollout.set_paused(client, "web", True) == "deployment.apps/web paused"
    with pytest.raises(rollout.RolloutError, match="already paused"):
        await rollout.set_paused(client, "web", True)
    await rollout.set_image(client, "web", {"main": "web:v2"})
    assert len(await plane.replicasets()) == 1, "a paused Deployment rolled out"
    await rollout.set_paused(client, "web", False)
    await plane.rolled_out(2, "web:v2", "resume did not roll out")
    before = {p.metadata.name for p in await plane.pods()}
    assert await rollout.restart(client, "web", now=0) == "deployment.apps/web restarted"

    async def replaced() -> object:
        pods = await plane.pods()
        ready = all(any(c.type == "Ready" for c in p.status.conditions) for p in pods)
        names = {p.metadata.name for p in pods}
        return (len(pods) == 2 and ready and not names & before) or sorted(names)

    await eventually(replaced, "restart did not replace the pods")
    d = await client.get(Kind.DEPLOYMENT, "web")
    assert d.spec.template.metadata.annotations[rollout.RESTARTED_AT] == "1970-01-01T00:00:00Z"

    wanted = make_deployment(replicas=5)
    wanted.spec.template.CopyFrom(d.spec.template)
    wanted.spec.template.spec.containers[0].image = "web:v2"
    text = await diff.diff(client, [wanted])
    changed = [line for line in text.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert "-  replicas: 2" in changed and "+  replicas: 5" in changed, text
    assert (await client.get(Kind.DEPLOYMENT, "web")).spec.replicas == 2, "diff wrote"
    same = make_deployment(replicas=2)
    same.spec.template.CopyFrom(d.spec.template)
    same.spec.template.spec.containers[0].image = "web:v2"
    # The manifest does not carry the controller's revision annotation; Apply keeps it anyway.
    assert await diff.diff(client, [same]) == "", "an unchanged manifest showed a diff"
