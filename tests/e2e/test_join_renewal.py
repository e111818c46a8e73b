"""A joined node's renewed certificate is used by its registration without registering again:
a real grpc.aio server with the control plane's security (API port with mutual TLS, join port)
and the agent's own NodeCertificates and Registration, in this test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controlplane.auth import bootstrap
from controlplane.auth.serving import Security
from controlplane.auth.tokens import TokenStore
from controlplane.store.memory import MemoryStore
from nodeagent import join
from nodeagent.registration import Registration
from pilothouse import credentials, pki
from pilothouse.v1 import controlplane_pb2, objects_pb2
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc


class RecordingRegistry(api_grpc.NodeRegistryServicer):
    """Records who registered and the serial of the certificate each heartbeat came with."""

    def __init__(self) -> None:
        self.registrations: list[str] = []
        self.heartbeat_serials: list[int] = []

    async def RegisterNode(self, request, context):  # type: ignore[no-untyped-def]
        self.registrations.append(request.node.metadata.name)
        return controlplane_pb2.RegisterNodeResponse(node=request.node, heartbeat_interval_ms=100)

    async def Heartbeat(self, request, context):  # type: ignore[no-untyped-def]
        pem = context.auth_context()["x509_pem_cert"][0]
        self.heartbeat_serials.append(pki.load_cert(pem).serial_number)
        return controlplane_pb2.HeartbeatResponse()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, str, RecordingRegistry, str]]:
    store = MemoryStore()
    cluster_pki = bootstrap.ensure(tmp_path / "pki")
    tokens = TokenStore(store)
    security = Security(pki=cluster_pki, tokens=tokens, join_listen="127.0.0.1:0")
    server = grpc.aio.server(interceptors=security.interceptors())
    registry = RecordingRegistry()
    api_grpc.add_NodeRegistryServicer_to_server(registry, server)
    ports = security.install(server, listen="127.0.0.1:0")
    await server.start()
    await security.start()  # the join port is a server of its own
    token = (await tokens.create(ttl=600)).token
    try:
        yield (
            f"127.0.0.1:{ports.api}",
            f"127.0.0.1:{ports.join}",
            registry,
            f"{token} {cluster_pki.ca_cert_hash}",
        )
    finally:
        await security.stop()
        await server.stop(0)
        await store.close()


async def _until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{what} within 10 s")


async def test_registration_switches_to_a_renewed_certificate_without_registering_again(
    served: tuple[str, str, RecordingRegistry, str], tmp_path: Path
) -> None:
    api, join_address, registry, secrets = served
    token, ca_hash = secrets.split()
    certs = join.NodeCertificates(
        tmp_path / "node",
        node_name="n1",
        server=api,
        join_server=join_address,
        token=token,
        ca_cert_hash=ca_hash,
    )
    first = await certs.ensure()
    registration = Registration(
        server=api,
        node_name="n1",
        instance_id="instance-1",
        node_status=objects_pb2.NodeStatus,
        agent_address="127.0.0.1:1",
        tls=certs.material,
    )
    running = asyncio.create_task(registration.run())
    try:
        await _until(lambda: len(registry.heartbeat_serials) >= 2, "no heartbeats arrived")
        assert set(registry.heartbeat_serials) == {first.cert.serial_number}
        renewed = await certs.renew_once()
        await _until(
            lambda: registry.heartbeat_serials[-1] == renewed.cert.serial_number,
            "heartbeats never came with the renewed certificate",
        )
        assert registry.registrations == ["n1"], (
            f"the node registered again on renewal: {registry.registrations}"
        )
        assert not running.done()
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert (
        credentials.TlsMaterial(
            ca_pem=renewed.ca_pem, cert_pem=renewed.cert_pem, key_pem=renewed.key_pem
        )
        == certs.material()
    )
