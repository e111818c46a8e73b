"""Who may hold a node's certificate, on the real API server (its security as `pilothouse
controlplane` wires it, over a MemoryStore), seen as an attacker with a join token would try:
taking over a live node's name, using a revoked or deleted node's certificate, renewing for a
node that is gone, and a node rewriting its own labels (issue 11, items 3 and 4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from controlplane.api.server import ApiServer
from controlplane.auth import bootstrap
from controlplane.auth.admission import NodeAccessRules, node_lookup
from controlplane.auth.approvals import Approvals
from controlplane.auth.revocations import Revocations
from controlplane.auth.serving import Security
from controlplane.auth.tokens import TokenStore
from controlplane.nodes import conditions
from controlplane.nodes.agent import AgentCallFailed, connector
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from controlplane.nodes.registry import NodeRegistry
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from nodeagent import join
from pilothouse import credentials, kinds, pki
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2

GRACE = 60.0


@dataclass
class Plane:
    api: str
    join_address: str
    pki: bootstrap.ClusterPki
    tokens: TokenStore
    objects: ObjectStore
    revocations: Revocations

    def admin(self) -> grpc.aio.Channel:
        material = credentials.TlsMaterial(
            ca_pem=self.pki.ca.cert_pem,
            cert_pem=(admin := pki.issue_client(self.pki.ca, pki.ADMIN)).cert_pem,
            key_pem=admin.key_pem,
        )
        return credentials.secure_channel(self.api, material)

    async def join_node(self, node: str, *, token: str | None = None) -> join.NodeCredentials:
        token = token or (await self.tokens.create(ttl=600)).token
        return await join.join(
            join_address=self.join_address,
            token=token,
            ca_cert_hash=self.pki.ca_cert_hash,
            node_name=node,
        )


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    store = MemoryStore()
    objects = ObjectStore(store)
    cluster_pki = bootstrap.ensure(tmp_path / "pki", hosts=["127.0.0.1"])
    revocations = Revocations(store)
    tokens = TokenStore(store)
    security = Security(
        pki=cluster_pki,
        tokens=tokens,
        join_listen="127.0.0.1:0",
        access=NodeAccessRules(
            revocations=revocations,
            approvals=Approvals(store),
            lookup=node_lookup(objects),
            grace=GRACE,
        ),
    )
    server = ApiServer(
        objects=objects,
        listen="127.0.0.1:0",
        registry=NodeRegistry(objects),
        security=security,
    )
    address = await server.start()
    try:
        yield Plane(
            api=address,
            join_address=server.join_address or "",
            pki=cluster_pki,
            tokens=tokens,
            objects=objects,
            revocations=revocations,
        )
    finally:
        await server.stop()
        await store.close()


async def register(
    node: join.NodeCredentials, plane: Plane, *, labels: dict[str, str] | None = None
) -> objects_pb2.Node:
    name = node.node_name or ""
    async with credentials.secure_channel(plane.api, node.material) as channel:
        request = api.RegisterNodeRequest(
            node=objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=name, labels=labels)),
            instance_id=f"instance-{name}",
        )
        response = await api_grpc.NodeRegistryStub(channel).RegisterNode(request, timeout=10)
    return response.node


async def heartbeat(node: join.NodeCredentials, plane: Plane) -> grpc.StatusCode:
    name = node.node_name or ""
    async with credentials.secure_channel(plane.api, node.material) as channel:
        try:
            await api_grpc.NodeRegistryStub(channel).Heartbeat(
                api.HeartbeatRequest(node_name=name, instance_id=f"instance-{name}"), timeout=10
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def set_ready(plane: Plane, name: str, status: ReadyStatus, *, ago: float = 0.0) -> None:
    node = await plane.objects.get(Kind.NODE, "", name)
    reason = ReadyReason.AGENT_READY if status is ReadyStatus.TRUE else ReadyReason.STATUS_UNKNOWN
    conditions.set_ready(node, status=status, reason=reason, message="test", now=time.time() - ago)
    await plane.objects.update_status(node)


async def refused(coroutine) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    try:
        await coroutine
    except join.JoinError as error:
        return grpc.StatusCode.PERMISSION_DENIED, str(error)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_a_token_cannot_take_over_a_ready_node_without_an_admins_approval(
    plane: Plane,
) -> None:
    first = await plane.join_node("node-1")
    await register(first, plane)
    await set_ready(plane, "node-1", ReadyStatus.TRUE)

    # An attacker with a valid join token asks for node-1's certificate: refused, and told
    # how an admin would allow it.
    code, message = await refused(plane.join_node("node-1"))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "is Ready" in message, (
        f"a join token took over the Ready node-1 ({code.name}: {message})"
    )
    assert "pilothouse node approve node-1" in message
    # NotReady only a moment ago (the agent frozen for a few seconds): still refused.
    await set_ready(plane, "node-1", ReadyStatus.UNKNOWN, ago=4)
    code, message = await refused(plane.join_node("node-1"))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "NotReady for only" in message, message
    # NotReady for longer than the grace period: the machine is gone, a token may replace it.
    await set_ready(plane, "node-1", ReadyStatus.TRUE)
    await set_ready(plane, "node-1", ReadyStatus.UNKNOWN, ago=GRACE + 1)
    replaced = await plane.join_node("node-1")
    assert replaced.node_name == "node-1"

    # An admin's approval lets one join through, once.
    await set_ready(plane, "node-1", ReadyStatus.TRUE)
    async with plane.admin() as channel:
        await api_grpc.NodeAccessStub(channel).ApproveNode(
            api.ApproveNodeRequest(node_name="node-1"), timeout=10
        )
    approved = await plane.join_node("node-1")
    assert approved.node_name == "node-1"
    code, _ = await refused(plane.join_node("node-1"))
    assert code is grpc.StatusCode.PERMISSION_DENIED, "an approval was used twice"

    # A token made for the node is the approval said in advance; for another name it is not.
    bound = await plane.tokens.create(ttl=600, node="node-1", single_use=True)
    code, message = await refused(plane.join_node("node-2", token=bound.token))
    assert code is grpc.StatusCode.PERMISSION_DENIED and 'joins only node "node-1"' in message
    assert (await plane.join_node("node-1", token=bound.token)).node_name == "node-1"
    code, message = await refused(plane.join_node("node-1", token=bound.token))
    assert "single use and has been used" in message, message


async def test_after_node_revoke_the_old_certificate_is_refused_at_the_next_call(
    plane: Plane,
) -> None:
    node = await plane.join_node("node-1")
    await register(node, plane)
    assert await heartbeat(node, plane) is grpc.StatusCode.OK
    async with plane.admin() as channel:
        await api_grpc.NodeAccessStub(channel).RevokeNode(
            api.RevokeNodeRequest(node_name="node-1"), timeout=10
        )
    # The very next call with the old certificate is refused, whatever it asks.
    assert await heartbeat(node, plane) is grpc.StatusCode.UNAUTHENTICATED, (
        "a revoked node certificate was still accepted"
    )
    code, message = await refused(register(node, plane))
    assert code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in message, message
    code, _ = await refused(join.renew(address=plane.api, current=node))
    assert code is grpc.StatusCode.PERMISSION_DENIED, "a revoked node renewed its certificate"
    # The control plane stops talking to its agent too.
    client = connector(refuse=plane.revocations.cut_off)("127.0.0.1:1", "node-1")
    with pytest.raises(AgentCallFailed, match="cut off"):
        await client.sync_pods([])
    # Joining again needs an approval (a plain token is not enough for a revoked name) ...
    code, message = await refused(plane.join_node("node-1"))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "was revoked" in message, message
    async with plane.admin() as channel:
        await api_grpc.NodeAccessStub(channel).ApproveNode(
            api.ApproveNodeRequest(node_name="node-1"), timeout=10
        )
    again = await plane.join_node("node-1")
    # ... and the new certificate works while the old one stays refused.
    assert again.cert.not_valid_before_utc.timestamp() > node.cert.not_valid_before_utc.timestamp()
    assert await heartbeat(again, plane) is grpc.StatusCode.OK
    assert await heartbeat(node, plane) is grpc.StatusCode.UNAUTHENTICATED
    assert plane.revocations.cut_off("node-1") is None, "a rejoined node stays cut off"


async def test_node_revoke_ends_the_nodes_open_heartbeats_stream_and_the_clients_to_it(
    plane: Plane,
) -> None:
    node = await plane.join_node("node-1")
    await register(node, plane)
    # The control plane's client to the agent, made while the node was in good standing.
    agent = connector(refuse=plane.revocations.cut_off)("127.0.0.1:1", "node-1")
    async with credentials.secure_channel(plane.api, node.material) as channel:
        beats = api_grpc.NodeRegistryStub(channel).Heartbeats()
        await beats.write(
            api.HeartbeatRequest(node_name="node-1", instance_id="instance-node-1", ack=True)
        )
        await asyncio.wait_for(beats.read(), 10)  # the stream is open and is the heartbeat
        async with plane.admin() as admin:
            await api_grpc.NodeAccessStub(admin).RevokeNode(
                api.RevokeNodeRequest(node_name="node-1"), timeout=10
            )
        # No further beat is sent: the quiet stream itself is ended.
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(beats.read(), 10)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED, ended.value
        assert "revoked" in (ended.value.details() or "")
    with pytest.raises(AgentCallFailed, match="cut off"):
        await agent.sync_pods([])
    await agent.close()


async def test_deleting_a_node_cuts_its_certificate_off_and_renewal_needs_the_node(
    plane: Plane,
) -> None:
    node = await plane.join_node("node-1")
    # A node whose Node does not exist (joined, never registered): no renewal.
    code, message = await refused(join.renew(address=plane.api, current=node))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "no longer exists" in message, message

    await register(node, plane)
    assert await heartbeat(node, plane) is grpc.StatusCode.OK
    async with plane.admin() as channel:
        await api_grpc.ControlPlaneStub(channel).Delete(
            api.DeleteRequest(kind="nodes", name="node-1"), timeout=10
        )
    assert await heartbeat(node, plane) is grpc.StatusCode.UNAUTHENTICATED
    code, _ = await refused(register(node, plane))
    assert code is grpc.StatusCode.UNAUTHENTICATED, "a deleted node registered itself again"
    with pytest.raises(Exception, match="not found"):
        await plane.objects.get(Kind.NODE, "", "node-1")
    # A deleted node joins again with a new token (the name is free).
    again = await plane.join_node("node-1")
    await register(again, plane)
    assert await heartbeat(again, plane) is grpc.StatusCode.OK


async def test_a_node_certificate_cannot_change_its_hostname_label(plane: Plane) -> None:
    node = await plane.join_node("node-1")
    registered = await register(node, plane, labels={"disk": "ssd"})
    assert registered.metadata.labels["kubernetes.io/hostname"] == "node-1"
    assert registered.metadata.labels["disk"] == "ssd"

    for labels, why in (
        ({"kubernetes.io/hostname": "node-2"}, "only to its own name"),
        ({"node-role.kubernetes.io/control-plane": ""}, "set by an admin only"),
        ({"node-restriction.pilothouse.io/pool": "gpu"}, "set by an admin only"),
        ({"pilothouse.io/anything": "x"}, "only the documented labels"),
    ):
        code, message = await refused(register(node, plane, labels=labels))
        assert code is grpc.StatusCode.PERMISSION_DENIED and why in message, (
            f"node-1 registering with {labels}: {code.name}: {message}"
        )
    stored = await plane.objects.get(Kind.NODE, "", "node-1")
    assert stored.metadata.labels["kubernetes.io/hostname"] == "node-1", (
        "node-1 rewrote its hostname label"
    )

    # An admin may set the admin-only labels; the node's next registration keeps them.
    async with plane.admin() as channel:
        stored.metadata.labels["node-role.kubernetes.io/worker"] = ""
        await api_grpc.ControlPlaneStub(channel).Apply(
            api.ApplyRequest(object=kinds.wrap(stored)), timeout=10
        )
    again = await register(node, plane, labels={"disk": "nvme"})
    assert "node-role.kubernetes.io/worker" in again.metadata.labels
    assert again.metadata.labels["disk"] == "nvme"
