"""What a lost node's pods become, by who owns them (issue 15): a pod no controller replaces is
Failed with reason NodeLost (and Terminating until its node confirms it stopped), a
DaemonSet's pod stays bound to its node (it tolerates an unreachable node), a ReplicaSet's pod
is evicted so its controller replaces it elsewhere."""

from __future__ import annotations

from pilothouse.kinds import Kind
from tests import factories
from tests.unit.test_nodelifecycle import Cluster


async def test_a_lost_nodes_pods_by_owner() -> None:
    async with Cluster() as cluster:
        cluster.objects.graceful_pods = True
        await cluster.join("n1", "n2")
        await cluster.objects.create(factories.pod(name="bare", node="n1", phase="Running"))
        daemon = factories.pod(name="agent-x", node="n1", phase="Running")
        daemon.metadata.owner_references.add(
            kind="DaemonSet", name="agent", uid="d1", controller=True
        )
        await cluster.objects.create(daemon)
        await cluster.objects.create(
            factories.pod(name="web-x", node="n1", phase="Running", owner="rs1", owner_name="web")
        )
        await cluster.controller.check()
        await cluster.tick(5.5, alive=["n2"])

        bare = await cluster.objects.get(Kind.POD, "default", "bare")
        assert (bare.status.phase, bare.status.reason) == ("Failed", "NodeLost")
        assert bare.status.message == "Node n1 which was running pod bare is unresponsive"
        assert bare.metadata.HasField("deletion_timestamp"), "kept, Terminating"
        daemon_pod = await cluster.objects.get(Kind.POD, "default", "agent-x")
        assert not daemon_pod.metadata.HasField("deletion_timestamp"), "a DaemonSet pod was evicted"
        assert daemon_pod.status.phase == "Running"
        web = await cluster.objects.get(Kind.POD, "default", "web-x")
        assert web.metadata.HasField("deletion_timestamp"), "the ReplicaSet's pod was not evicted"
        assert web.status.phase == "Running", "a replaced pod is not marked Failed"
