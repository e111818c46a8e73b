"""Mutual TLS and authorization on a real grpc.aio server: the join flow, per-RPC rules, renewal,
and the agent's server that only the control plane may call."""

from __future__ import annotations

import argparse
import datetime
import io
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from controlplane.api.servicer import ControlPlaneServicer
from controlplane.auth import bootstrap
from controlplane.auth.serving import Security
from controlplane.auth.tokens import CreatedToken, TokenStore
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from nodeagent import join
from pilothouse import config as cli_config
from pilothouse import credentials, pki
from pilothouse.cli import token as token_verb
from pilothouse.cli.context import Context
from pilothouse.cli.resources import UsageError
from pilothouse.client import ClientError
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, controlplane_pb2, objects_pb2
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeRegistry(api_grpc.NodeRegistryServicer):
    def __init__(self) -> None:
        self.heartbeats: list[str] = []

    async def RegisterNode(self, request, context):  # type: ignore[no-untyped-def]
        return controlplane_pb2.RegisterNodeResponse(node=request.node, heartbeat_interval_ms=1)

    async def Heartbeat(self, request, context):  # type: ignore[no-untyped-def]
        self.heartbeats.append(request.node_name)
        return controlplane_pb2.HeartbeatResponse()


@dataclass
class Cluster:
    api: str
    join: str
    pki: bootstrap.ClusterPki
    tokens: TokenStore
    clock: Clock
    registry: FakeRegistry
    admin_config: Path

    def admin(self) -> credentials.TlsMaterial:
        material = credentials.from_config(cli_config.resolve(config_path=str(self.admin_config)))
        assert material is not None
        return material


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    clock = Clock()
    store = MemoryStore()
    cluster_pki = bootstrap.ensure(tmp_path / "pki", hosts=["127.0.0.1"])
    tokens = TokenStore(store, now=clock)
    security = Security(pki=cluster_pki, tokens=tokens, join_listen="127.0.0.1:0")
    server = grpc.aio.server(interceptors=security.interceptors())
    api_grpc.add_ControlPlaneServicer_to_server(ControlPlaneServicer(ObjectStore(store)), server)
    registry = FakeRegistry()
    api_grpc.add_NodeRegistryServicer_to_server(registry, server)
    ports = security.install(server, listen="127.0.0.1:0")
    await server.start()
    await security.start()  # the join port is a server of its own
    api = f"127.0.0.1:{ports.api}"
    admin_config = bootstrap.ensure_admin_config(
        cluster_pki, path=tmp_path / "admin.conf", server=api
    )
    try:
        yield Cluster(
            api=api,
            join=f"127.0.0.1:{ports.join}",
            pki=cluster_pki,
            tokens=tokens,
            clock=clock,
            registry=registry,
            admin_config=admin_config,
        )
    finally:
        await security.stop()
        await server.stop(0)


def _every_method() -> list[tuple[str, bool, type, str]]:
    """(full method name, server streaming, request class, service) for every guarded service."""
    methods = []
    for service in ("ControlPlane", "NodeRegistry", "Tokens"):
        descriptor = controlplane_pb2.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            request = getattr(controlplane_pb2, method.input_type.name)
            full = f"/pilothouse.v1.{service}/{method.name}"
            methods.append((full, method.server_streaming, request, service))
    return methods


async def _call(channel: grpc.aio.Channel, method: str, streaming: bool, request: object) -> None:
    serialize = type(request).SerializeToString  # type: ignore[attr-defined]
    if streaming:
        call = channel.unary_stream(method, request_serializer=serialize)(request, timeout=10)
        async for _ in call:
            break
    else:
        await channel.unary_unary(method, request_serializer=serialize)(request, timeout=10)


async def _join(cluster: Cluster, node: str, **overrides: str) -> join.NodeCredentials:
    token = overrides.get("token") or (await cluster.tokens.create(ttl=600)).token
    return await join.join(
        join_address=cluster.join,
        token=token,
        ca_cert_hash=overrides.get("ca_cert_hash", cluster.pki.ca_cert_hash),
        node_name=node,
    )


async def test_client_without_credentials_is_refused_on_every_rpc(cluster: Cluster) -> None:
    ca_only = credentials.TlsMaterial(ca_pem=cluster.pki.ca.cert_pem)
    refused = []
    async with credentials.secure_channel(cluster.join, ca_only) as channel:
        for method, streaming, request, _ in _every_method():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _call(channel, method, streaming, request())
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED, (
                f"{method} without a client certificate answered {caught.value.code()}"
            )
            refused.append(method)
    assert len(refused) >= 12
    assert cluster.registry.heartbeats == [], "an anonymous heartbeat reached the registry"
    # The API port does not even complete a call without a client certificate.
    async with credentials.secure_channel(cluster.api, ca_only) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _call(
                channel,
                "/pilothouse.v1.ControlPlane/List",
                False,
                controlplane_pb2.ListRequest(kind="pods"),
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_admin_config_is_private_and_allows_everything(cluster: Cluster) -> None:
    assert stat.S_IMODE(cluster.admin_config.stat().st_mode) == 0o600
    assert stat.S_IMODE((cluster.pki.directory / "admin.key").stat().st_mode) == 0o600
    async with credentials.secure_channel(cluster.api, cluster.admin()) as channel:
        listed = await api_grpc.ControlPlaneStub(channel).List(
            controlplane_pb2.ListRequest(kind="deployments"), timeout=10
        )
        assert list(listed.items) == []
        created = await api_grpc.TokensStub(channel).CreateToken(
            controlplane_pb2.CreateTokenRequest(ttl_seconds=60, description="ci"), timeout=10
        )
        assert created.ca_cert_hash == cluster.pki.ca_cert_hash
        assert created.join_address == cluster.join
        tokens = await api_grpc.TokensStub(channel).ListTokens(
            controlplane_pb2.ListTokensRequest(), timeout=10
        )
        assert [t.id for t in tokens.tokens] == [created.info.id]
        assert tokens.tokens[0].state == "valid"
        await api_grpc.NodeRegistryStub(channel).Heartbeat(
            controlplane_pb2.HeartbeatRequest(node_name="any"), timeout=10
        )


async def test_join_gives_a_working_mtls_identity_for_its_own_node_only(
    cluster: Cluster, tmp_path: Path
) -> None:
    node = await _join(cluster, "n1")
    assert node.node_name == "n1"
    node.save(tmp_path / "n1")
    assert stat.S_IMODE((tmp_path / "n1" / "node.key").stat().st_mode) == 0o600
    async with credentials.secure_channel(cluster.api, node.material) as channel:
        registry = api_grpc.NodeRegistryStub(channel)
        await registry.RegisterNode(
            controlplane_pb2.RegisterNodeRequest(
                node=objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name="n1"))
            ),
            timeout=10,
        )
        await registry.Heartbeat(controlplane_pb2.HeartbeatRequest(node_name="n1"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await registry.Heartbeat(controlplane_pb2.HeartbeatRequest(node_name="n2"), timeout=10)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "'n1' may not call /pilothouse.v1.NodeRegistry/Heartbeat for node 'n2'" in (
            caught.value.details() or ""
        )
        for method, streaming, request, service in _every_method():
            if service == "NodeRegistry":
                continue
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _call(channel, method, streaming, request())
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED, (
                f"a node certificate could call {method}"
            )
    assert cluster.registry.heartbeats == ["n1"], "another node's heartbeat got through"


async def test_wrong_token_is_refused(cluster: Cluster) -> None:
    await cluster.tokens.create()
    with pytest.raises(join.JoinError) as caught:
        await _join(cluster, "n1", token="abcdef.0123456789abcdef")
    assert str(caught.value) == (
        "the control plane refused node 'n1': the join token \"abcdef\" is unknown to this "
        "control plane; create one with `pilothouse token create`"
    )


async def test_expired_and_revoked_tokens_are_refused(cluster: Cluster) -> None:
    expiring = await cluster.tokens.create(ttl=60)
    cluster.clock.now += 3600
    with pytest.raises(join.JoinError, match=r'join token "\w+" expired 59m ago'):
        await _join(cluster, "n1", token=expiring.token)
    revoked = await cluster.tokens.create(ttl=600)
    await cluster.tokens.delete(revoked.info.id)
    with pytest.raises(join.JoinError, match="was revoked"):
        await _join(cluster, "n1", token=revoked.token)


async def test_wrong_ca_hash_is_refused_before_anything_is_sent(cluster: Cluster) -> None:
    wrong = pki.ca_cert_hash(pki.create_ca().cert_pem)
    token = await cluster.tokens.create()
    with pytest.raises(join.JoinError) as caught:
        await _join(cluster, "n1", token=token.token, ca_cert_hash=wrong)
    assert str(caught.value) == (
        f"the control plane's CA hash {cluster.pki.ca_cert_hash} does not match "
        f"--ca-cert-hash {wrong}; refusing to join"
    )
    with pytest.raises(join.JoinError, match="sha256:<64 hex digits>"):
        await _join(cluster, "n1", token=token.token, ca_cert_hash="sha256:abc")


async def _joining(cluster: Cluster, tmp_path: Path) -> tuple[CreatedToken, join.NodeCertificates]:
    """A new bootstrap token, and node n1's certificates set to join with it."""
    token = await cluster.tokens.create()
    certs = join.NodeCertificates(
        tmp_path / "pki",
        node_name="n1",
        server=cluster.api,
        join_server=cluster.join,
        token=token.token,
        ca_cert_hash=cluster.pki.ca_cert_hash,
    )
    return token, certs


async def test_node_certificates_join_once_then_renew_over_mtls(
    cluster: Cluster, tmp_path: Path
) -> None:
    token, certs = await _joining(cluster, tmp_path)
    first = await certs.ensure()
    # A restart finds the files and does not join again (the token may be gone by then).
    await cluster.tokens.delete(token.info.id)
    again = join.NodeCertificates(tmp_path / "pki", node_name="n1", server=cluster.api)
    assert (await again.ensure()).cert_pem == first.cert_pem
    renewed = await again.renew_once()
    assert renewed.cert.serial_number != first.cert.serial_number
    assert renewed.key_pem != first.key_pem
    assert join.NodeCredentials.load(tmp_path / "pki") == renewed
    # Past two thirds of its life, ensure() renews by itself.
    later = join.NodeCertificates(
        tmp_path / "pki",
        node_name="n1",
        server=cluster.api,
        now=lambda: pki.renewal_time(renewed.cert) + datetime.timedelta(seconds=1),
    )
    assert (await later.ensure()).cert_pem != renewed.cert_pem
    # Another node's name on the same files: refused to reuse, and no token to join with.
    other = join.NodeCertificates(tmp_path / "pki", node_name="n2", server=cluster.api)
    with pytest.raises(
        join.JoinError, match=r"join it with --token-file \(or --token -\) and --ca-cert-hash"
    ):
        await other.ensure()


class EchoAgent(agent_pb2_grpc.NodeAgentServicer):
    async def ListPods(self, request, context):  # type: ignore[no-untyped-def]
        return agent_pb2.ListPodsResponse()


async def test_agent_server_accepts_only_the_control_plane(
    cluster: Cluster, tmp_path: Path
) -> None:
    _, certs = await _joining(cluster, tmp_path)
    node = await certs.ensure()
    server = grpc.aio.server(interceptors=[credentials.require_identity(pki.CONTROLPLANE)])
    agent_pb2_grpc.add_NodeAgentServicer_to_server(EchoAgent(), server)
    port = server.add_secure_port("127.0.0.1:0", certs.server_credentials())
    await server.start()
    try:
        address = f"127.0.0.1:{port}"

        async def list_pods(material: credentials.TlsMaterial) -> grpc.StatusCode:
            async with credentials.secure_channel(address, material, server_name="n1") as ch:
                try:
                    await agent_pb2_grpc.NodeAgentStub(ch).ListPods(
                        agent_pb2.ListPodsRequest(), timeout=10
                    )
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

        assert await list_pods(cluster.pki.agent_client()) is grpc.StatusCode.OK
        assert await list_pods(cluster.admin()) is grpc.StatusCode.PERMISSION_DENIED
        other = await _join(cluster, "n2")
        assert await list_pods(other.material) is grpc.StatusCode.PERMISSION_DENIED
        # A renewed node certificate is served without restarting the server.
        await certs.renew_once()
        assert await list_pods(cluster.pki.agent_client()) is grpc.StatusCode.OK
        assert node.cert_pem != certs.current.cert_pem
    finally:
        await server.stop(0)


def _token_cli(
    cluster: Cluster, *argv: str, config: Path | None = None
) -> tuple[argparse.Namespace, Context, io.StringIO]:
    """Parsed `pilothouse token …` arguments and a context whose stdout the test reads."""

    parser = argparse.ArgumentParser()
    token_verb.add_parsers(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["token", *argv])
    settings = cli_config.resolve(config_path=str(config or cluster.admin_config))
    out = io.StringIO()
    ctx = Context(config=settings, out=out, err=io.StringIO())
    return args, ctx, out


async def test_token_cli_create_list_delete(cluster: Cluster) -> None:

    args, ctx, out = _token_cli(cluster, "create", "--ttl", "1h30m", "--description", "rack 3")
    assert await token_verb.run(args, ctx) == 0
    token = out.getvalue().strip()
    assert (await cluster.tokens.verify(token)).ok, "the printed token does not verify"

    args, ctx, out = _token_cli(cluster, "create", "--print-join-command")
    assert await token_verb.run(args, ctx) == 0
    line = out.getvalue().strip()
    # The token reaches the agent on its standard input (`echo` is the shell's own), never in
    # a command line that `ps` shows.
    piped, _, command = line.partition(" | ")
    assert piped.startswith("echo ") and (await cluster.tokens.verify(piped[5:])).ok, line
    assert command.startswith(f"pilothouse agent --server {cluster.api} ")
    assert f"--join-server {cluster.join}" in command
    assert f"--ca-cert-hash {cluster.pki.ca_cert_hash}" in command
    assert command.endswith("--token -") and piped[5:] not in command, line

    args, ctx, out = _token_cli(cluster, "list")
    assert await token_verb.run(args, ctx) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "TOKEN", "ID", "TTL", "EXPIRES", "STATE", "USAGES", "NODE", "DESCRIPTION"
    ]  # fmt: skip
    assert any(line.startswith(token.split(".")[0]) and "rack 3" in line for line in lines)

    args, ctx, out = _token_cli(cluster, "delete", token)
    assert await token_verb.run(args, ctx) == 0
    assert out.getvalue() == f'bootstrap token "{token.split(".")[0]}" deleted\n'
    with pytest.raises(join.JoinError, match="was revoked"):
        await _join(cluster, "n1", token=token)


async def test_token_cli_needs_admin_credentials(cluster: Cluster, tmp_path: Path) -> None:

    plain = tmp_path / "plain.yaml"
    plain.write_text(f"server: {cluster.api}\n")
    args, ctx, _ = _token_cli(cluster, "list", config=plain)
    with pytest.raises(UsageError, match="need the admin credentials"):
        await token_verb.run(args, ctx)
    # A node's certificate is not an admin's.
    node = await _join(cluster, "n1")
    node.save(tmp_path / "n1")
    as_node = tmp_path / "node.yaml"
    as_node.write_text(
        f"server: {cluster.api}\nca-cert: n1/ca.crt\nclient-cert: n1/node.crt\n"
        "client-key: n1/node.key\n"
    )
    args, ctx, _ = _token_cli(cluster, "list", config=as_node)
    with pytest.raises(ClientError, match=r"may not call /pilothouse\.v1\.Tokens/ListTokens"):
        await token_verb.run(args, ctx)
    with pytest.raises(UsageError, match="not a duration"):
        token_verb.parse_ttl("tomorrow")
    assert token_verb.parse_ttl("1h30m") == 5400
