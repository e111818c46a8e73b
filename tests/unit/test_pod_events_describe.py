"""`pilothouse describe pod` and `get events` show the agent's pod events (API over a
MemoryStore, events stored as node sync stores them).

What a user reads: the container's State, Last State (with the probe's words), Ready and
Restart Count; the Conditions with why the pod is not Ready; and an Events section with
kubectl's columns (Type Reason Age From Message), only this pod's events (not those of an
older pod of the same name), oldest first, repeats shown as "(xN over …)".
"""

from __future__ import annotations

import time

from controlplane.events import EventRecorder
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.unit.cli_support import Cli

UNREADY = (
    "containers with unready status: [app] "
    "(app: Readiness probe failed: HTTP probe failed with statuscode: 503)"
)


def reported(
    pod: o.Pod,
    reason: str,
    message: str,
    *,
    ago: float,
    first_ago: float | None = None,
    count: int = 1,
    type: str = "Normal",
) -> o.Event:
    event = o.Event(reason=reason, message=message, type=type, count=count)
    ref = event.involved_object
    ref.api_version, ref.kind = "v1", "Pod"
    ref.namespace, ref.name, ref.uid = "default", pod.metadata.name, pod.metadata.uid
    ref.field_path = "spec.containers{app}"
    event.source.component, event.source.host = "pilothouse-agent", "n1"
    now = time.time()
    event.first_timestamp.FromNanoseconds(int((now - (first_ago or ago)) * 1e9))
    event.last_timestamp.FromNanoseconds(int((now - ago) * 1e9))
    return event


async def a_pod(objects: object, name: str) -> o.Pod:
    app = factories.container(name="app")
    return await objects.create(factories.pod(name=name, node="n1", containers=[app]))  # type: ignore[attr-defined]


async def test_describe_pod_shows_states_condition_messages_and_its_events(
    pilothouse: Cli,
    memory_control_plane: object,
) -> None:
    objects = memory_control_plane.objects  # type: ignore[attr-defined]
    pod = await a_pod(objects, "web-1")
    pod.status.phase = "Running"
    cs = pod.status.container_statuses.add(name="app", restart_count=1, ready=False, started=True)
    cs.state.running.started_at.GetCurrentTime()
    cs.last_state.terminated.exit_code = 137
    cs.last_state.terminated.reason = "Error"
    cs.last_state.terminated.message = "Container app failed liveness probe, will be restarted"
    pod.status.conditions.add(type="PodScheduled", status="True")
    pod.status.conditions.add(type="Ready", status="False", reason="ContainersNotReady")
    pod.status.conditions[-1].message = UNREADY
    pod = await objects.update_status(pod)
    other = await a_pod(objects, "db-1")

    recorder = EventRecorder(objects, component="node-controller")
    older = o.Pod()
    older.CopyFrom(pod)
    older.metadata.uid = "an-older-uid"
    for event in (
        reported(pod, "Pulled", 'Successfully pulled image "busybox:stable" in 190ms', ago=300),
        reported(pod, "Started", "Started container app", ago=290),
        reported(
            pod,
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 500",
            type="Warning",
            ago=200,
            first_ago=230,
            count=2,
        ),
        reported(
            pod,
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 500",
            type="Warning",
            ago=180,
        ),
        reported(pod, "Killing", "Container app failed liveness probe, will be restarted", ago=179),
        reported(older, "Started", "Started container of an older pod", ago=3000),
        reported(other, "Started", "Started container of another pod", ago=10),
    ):
        await recorder.merge(event)

    out = await pilothouse.describe(
        "pod",
        "web-1",
        "    State:          Running",
        "    Last State:     Terminated",
        "      Reason:       Error",
        "      Message:      Container app failed liveness probe, will be restarted",
        "      Exit Code:    137",
        "    Ready:          False",
        "    Restart Count:  1",
    )
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "Type Status Reason Message" in lines, out
    assert f"Ready False ContainersNotReady {UNREADY}" in lines, (
        f"describe pod does not say why the pod is not Ready:\n{out}"
    )
    section = lines[lines.index("Events:") + 1 :]
    assert section[0] == "Type Reason Age From Message", out
    rows = section[2:]
    assert [row.split()[:2] for row in rows] == [
        ["Normal", "Pulled"],
        ["Normal", "Started"],
        ["Warning", "Unhealthy"],
        ["Normal", "Killing"],
    ], f"the Events section should list this pod's events, oldest first:\n{out}"
    unhealthy = rows[2]
    assert "(x3 over 3m" in unhealthy, f"repeated failures should show as x3: {unhealthy}"
    assert unhealthy.endswith(
        "pilothouse-agent Liveness probe failed: HTTP probe failed with statuscode: 500"
    ), unhealthy
    assert "older pod" not in out and "another pod" not in out

    code, out, err = await pilothouse("get", "events")
    assert code == 0, err
    header, *listed = out.splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], out
    about_web = [line for line in listed if "pod/web-1" in line]
    assert len(about_web) == 5, f"get events should list the pod's events:\n{out}"
    assert any("Warning" in line and "Unhealthy" in line for line in about_web), out
