"""`rollout status|history|undo` of DaemonSets and StatefulSets over the in-process API, the
controller's part played by writing status and ControllerRevisions directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format

from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.unit.cli_support import Cli


async def _revision(objects: Any, owner: o.DaemonSet, number: int, image: str) -> None:
    template = o.PodTemplateSpec()
    template.CopyFrom(owner.spec.template)
    template.spec.containers[0].image = image
    rev = o.ControllerRevision()
    rev.metadata.name = f"{owner.metadata.name}-{number}"
    rev.metadata.namespace = "default"
    rev.metadata.owner_references.add(
        kind="DaemonSet", name=owner.metadata.name, uid=owner.metadata.uid, controller=True
    )
    rev.data.update({"spec": {"template": json_format.MessageToDict(template)}})
    rev.revision = number
    await objects.create(rev)


async def test_daemonset_status_history_and_undo(
    pilothouse: Cli, memory_control_plane: Any, tmp_path: Path
) -> None:
    objects = memory_control_plane.objects
    ds = factories.daemon_set(image="busybox:2")
    manifests.set_defaults(ds)
    ds = await objects.create(ds)
    ds.status.desired_number_scheduled = 3
    ds.status.updated_number_scheduled = 1
    ds.status.observed_generation = ds.metadata.generation
    ds = await objects.update_status(ds)
    code, out, _ = await pilothouse("rollout", "status", "ds/agent", "--watch=false")
    assert out == (
        'Waiting for daemon set "agent" rollout to finish: 1 out of 3 new pods have been '
        "updated...\n"
    )
    await _revision(objects, ds, 1, "busybox:1")
    await _revision(objects, ds, 2, "busybox:2")
    code, out, _ = await pilothouse("rollout", "history", "daemonset/agent")
    assert out.splitlines()[0] == "daemonset.apps/agent"
    assert [line.split()[:3] for line in out.splitlines()[3:]] == [
        ["1", "<none>", "main=busybox:1"],
        ["2", "<none>", "main=busybox:2"],
    ]
    code, out, _ = await pilothouse("rollout", "history", "ds/agent", "--revision", "1")
    assert code == 0 and "image: busybox:1" in out
    code, out, err = await pilothouse("rollout", "undo", "ds/agent")
    assert (code, out) == (0, "daemonset.apps/agent rolled back\n"), err
    back = await objects.get(Kind.DAEMONSET, "default", "agent")
    assert back.spec.template.spec.containers[0].image == "busybox:1"
    code, _, err = await pilothouse("rollout", "pause", "ds/agent")
    assert code == 1 and "not supported" in err


async def test_statefulset_status_follows_kubectl(
    pilothouse: Cli, memory_control_plane: Any
) -> None:
    objects = memory_control_plane.objects
    sts = factories.stateful_set(replicas=3)
    manifests.set_defaults(sts)
    sts = await objects.create(sts)
    sts.status.observed_generation = sts.metadata.generation
    sts.status.ready_replicas = 1
    sts = await objects.update_status(sts)
    code, out, _ = await pilothouse("rollout", "status", "sts/web", "--watch=false")
    assert out == "Waiting for 2 pods to be ready...\n"
    sts.status.ready_replicas = 3
    sts.status.current_replicas = 3
    sts.status.current_revision = sts.status.update_revision = "web-abc"
    await objects.update_status(sts)
    code, out, _ = await pilothouse("rollout", "status", "sts/web", "--timeout", "5s")
    assert (code, out) == (0, "statefulset rolling update complete 3 pods at revision web-abc...\n")
