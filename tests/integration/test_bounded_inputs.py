"""Bounded inputs and reserved ports, as an attacker would push them (issue 11, item 5): a pod
asking for a node agent's port as its hostPort, anonymous 60 MiB requests to the join port, an
oversized object on the API port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from controlplane.api.errors import FIELD_ERRORS_KEY
from pilothouse import kinds
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.fixtures.controlplane import ControlPlaneProcess, InProcessControlPlane

AGENT_PORT = 40123
MiB = 1024 * 1024


async def register_node(channel: grpc.aio.Channel, name: str, *, agent_port: int) -> None:
    node = objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=name))
    node.status.daemon_endpoints.kubelet_endpoint.port = agent_port
    node.status.addresses.add(type="InternalIP", address="127.0.0.1")
    await api_grpc.NodeRegistryStub(channel).RegisterNode(
        api.RegisterNodeRequest(node=node, instance_id=f"agent-{name}"), timeout=10
    )


async def apply(channel: grpc.aio.Channel, message: object) -> tuple[grpc.StatusCode, str]:
    try:
        await api_grpc.ControlPlaneStub(channel).Apply(
            api.ApplyRequest(object=kinds.wrap(message)), timeout=10
        )
    except grpc.aio.AioRpcError as error:
        fields = dict(error.trailing_metadata() or ()).get(FIELD_ERRORS_KEY)
        return error.code(), (error.details() or "") + (" [field errors]" if fields else "")
    return grpc.StatusCode.OK, ""


async def test_a_host_port_equal_to_an_agents_port_is_refused_with_its_field_path(
    memory_control_plane: InProcessControlPlane,
) -> None:
    async with grpc.aio.insecure_channel(memory_control_plane.address) as channel:
        await register_node(channel, "node-1", agent_port=AGENT_PORT)
        pod = factories.pod(
            name="squatter",
            containers=[factories.container(host_port=AGENT_PORT, container_port=80)],
        )
        code, message = await apply(channel, pod)
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (
            f"a pod taking node-1's agent port {AGENT_PORT} was accepted"
        )
        assert f"spec.containers[0].ports[0].hostPort: Invalid value: {AGENT_PORT}" in message
        assert "reserved" in message, message

        # The same in a Deployment's template, and the cluster's own well-known ports.
        deployment = factories.deployment(name="squatters")
        deployment.spec.template.spec.containers[0].ports.add(container_port=80, host_port=2379)
        code, message = await apply(channel, deployment)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "spec.template.spec.containers[0].ports[0].hostPort: Invalid value: 2379" in (
            message
        )
        # The API's own port.
        own = int(memory_control_plane.address.rpartition(":")[2])
        pod = factories.pod(
            name="api-squatter", containers=[factories.container(host_port=own, container_port=80)]
        )
        assert (await apply(channel, pod))[0] is grpc.StatusCode.INVALID_ARGUMENT

        # Any other port is fine.
        pod = factories.pod(
            name="web", containers=[factories.container(host_port=18080, container_port=80)]
        )
        assert await apply(channel, pod) == (grpc.StatusCode.OK, "")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.slow
async def test_anonymous_huge_requests_to_the_join_port_do_not_grow_the_control_plane(
    control_plane: ControlPlaneProcess,
) -> None:
    assert control_plane.process is not None and control_plane.join_address
    pid = control_plane.process.pid
    payload = api.SignNodeCertificateRequest(csr_pem="x" * (60 * MiB)).SerializeToString()
    ok = api.SignNodeCertificateRequest(node_name="n", csr_pem="x").SerializeToString()

    async def send(body: bytes) -> grpc.StatusCode:
        # Anonymous: TLS without a client certificate, as anyone can reach the join port.
        credentials = grpc.ssl_channel_credentials(
            (control_plane.data_dir / "pki" / "ca.crt").read_bytes()
        )
        options = [
            ("grpc.ssl_target_name_override", "pilothouse-controlplane"),
            ("grpc.max_send_message_length", -1),
        ]
        async with grpc.aio.secure_channel(
            control_plane.join_address, credentials, options=options
        ) as channel:
            call = channel.unary_unary(
                "/pilothouse.v1.Join/SignNodeCertificate",
                request_serializer=lambda raw: raw,
                response_deserializer=lambda raw: raw,
            )
            try:
                await call(body, timeout=60)
            except grpc.aio.AioRpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    # Warm up (the first calls allocate the server's own buffers), then measure.
    for _ in range(3):
        await send(ok)
    before = rss_mib(pid)
    limit = asyncio.Semaphore(4)

    async def huge() -> grpc.StatusCode:
        async with limit:
            return await send(payload)

    started = time.monotonic()
    peak = before

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        codes = await asyncio.gather(*(huge() for _ in range(100)))
    finally:
        watcher.cancel()
    after = rss_mib(pid)
    assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, (
        f"60 MiB requests to the join port were answered {set(codes)}"
    )
    assert control_plane.running, "the control plane died under the requests"
    assert after - before < 50 and peak - before < 50, (
        f"100 anonymous 60 MiB requests took the control plane from {before:.0f} MiB to "
        f"{after:.0f} MiB (peak {peak:.0f} MiB) in {time.monotonic() - started:.0f} s"
    )
    # And it still serves its admin.
    async with control_plane.client() as client:
        await client.list(kinds.Kind.NODE)


async def test_an_object_larger_than_4_mib_is_refused_by_the_api(
    control_plane: ControlPlaneProcess,
) -> None:
    pod = factories.pod(name="big")
    pod.metadata.annotations["filler"] = "x" * (5 * MiB)
    async with control_plane.channel() as channel:
        code, message = await apply(channel, pod)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (
        f"a 5 MiB object was answered {code.name}: {message[:200]}"
    )
