"""Secure join, as an operator does it: a real control plane (mutual TLS, the default) and real
agents in network namespaces of their own, joined with the line `pilothouse token create
--print-join-command` prints, running pods over mutual TLS; what a node certificate can and
cannot reach. Refused joins and anonymous clients are test_join_refused."""

from __future__ import annotations

from pathlib import Path

import grpc

from pilothouse import credentials, kinds
from pilothouse.cli.cluster.netns import NodeHost
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, controlplane_pb2, objects_pb2
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests.e2e.joining import (
    REPO,
    JoiningAgent,
    call,
    cli,
    every_method,
    flag,
    join_words,
    refusal,
    until,
)
from tests.fixtures.controlplane import ControlPlaneProcess


async def test_three_agents_join_with_a_token_and_run_pods_over_mutual_tls(
    cluster_hosts: list[NodeHost], agents: list[JoiningAgent], tmp_path: Path
) -> None:
    gateway = cluster_hosts[0].gateway
    plane = ControlPlaneProcess(
        tmp_path / "cp", listen=f"{gateway}:0", flags=("--tls-san", f"{gateway},cp.example")
    )
    plane.start()
    try:
        words = join_words(plane, tmp_path / "home", "--ttl", "10m")
        assert flag(words, "--server") == plane.address
        assert flag(words, "--ca-cert-hash") == plane.ca_cert_hash
        for host in cluster_hosts:
            agents.append(JoiningAgent(host.name, words, host=host))
            agents[-1].start()
        for agent in agents:
            agent.wait_serving()
        names = sorted(host.name for host in cluster_hosts)

        async with plane.client() as client:

            async def all_ready() -> bool:
                nodes = (await client.list(Kind.NODE)).items
                ready = {
                    n.metadata.name
                    for n in nodes
                    for c in n.status.conditions
                    if c.type == "Ready" and c.status == "True"
                }
                return sorted(ready) == names

            await until(all_ready, f"nodes {names} were not all Ready")
            applied = cli(
                plane, tmp_path / "home", "apply", "-f", str(REPO / "deploy/examples/web.yaml")
            )
            assert applied.returncode == 0, applied.stderr
            shown = cli(plane, tmp_path / "home", "get", "deploy", "-o", "json")
            assert shown.returncode == 0, shown.stderr

            async def running_everywhere() -> set[str] | None:
                pods = (await client.list(Kind.POD, namespace="default")).items
                running = [p for p in pods if p.status.phase == "Running"]
                nodes = {p.spec.node_name for p in running}
                return nodes if running and len(running) == len(pods) else None

            spread = await until(running_everywhere, "the Deployment's pods never all ran")
            assert spread == set(names), f"the 3 replicas ran on {sorted(spread)}, not spread"

        # What a node's certificate can and cannot do.
        first, second = agents[0], agents[1]
        node = first.credentials()
        assert node.node_name == first.name
        async with credentials.secure_channel(plane.address, node.material) as channel:
            stub = api_grpc.ControlPlaneStub(channel)
            deployment = objects_pb2.Deployment(api_version="apps/v1", kind="Deployment")
            deployment.metadata.name = "intruder"
            apply = stub.Apply(
                controlplane_pb2.ApplyRequest(object=kinds.wrap(deployment)),
                timeout=10,
            )
            assert await refusal(apply) is grpc.StatusCode.PERMISSION_DENIED, (
                "a node certificate could apply a Deployment"
            )
            for method, streaming, request in every_method():
                if "/NodeRegistry/" in method:
                    continue
                assert (
                    await refusal(call(channel, method, streaming, request()))
                    is grpc.StatusCode.PERMISSION_DENIED
                ), f"a node certificate could call {method}"
            registry = api_grpc.NodeRegistryStub(channel)
            other = registry.Heartbeat(
                controlplane_pb2.HeartbeatRequest(node_name=second.name), timeout=10
            )
            assert await refusal(other) is grpc.StatusCode.PERMISSION_DENIED, (
                f"node {first.name} could heartbeat for node {second.name}"
            )
            register_other = registry.RegisterNode(
                controlplane_pb2.RegisterNodeRequest(
                    node=objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=second.name))
                ),
                timeout=10,
            )
            assert await refusal(register_other) is grpc.StatusCode.PERMISSION_DENIED, (
                f"node {first.name} could register node {second.name}"
            )

        # An agent's own server admits only the control plane.
        async def list_pods(channel: grpc.aio.Channel) -> grpc.StatusCode:
            async with channel:
                stub = agent_pb2_grpc.NodeAgentStub(channel)
                return await refusal(stub.ListPods(agent_pb2.ListPodsRequest(), timeout=10))

        target = second.address
        assert await list_pods(plane.agent_channel(target, second.name)) is grpc.StatusCode.OK
        admin = plane.admin_tls()
        assert admin is not None
        as_admin = credentials.secure_channel(target, admin, server_name=second.name)
        assert await list_pods(as_admin) is grpc.StatusCode.PERMISSION_DENIED
        as_node = credentials.secure_channel(target, node.material, server_name=second.name)
        assert await list_pods(as_node) is grpc.StatusCode.PERMISSION_DENIED
        anonymous = credentials.TlsMaterial(ca_pem=node.ca_pem)
        no_cert = credentials.secure_channel(target, anonymous, server_name=second.name)
        assert await list_pods(no_cert) is not grpc.StatusCode.OK
        assert await list_pods(grpc.aio.insecure_channel(target)) is not grpc.StatusCode.OK

        # A restarted agent with its saved credentials needs no token (the token is revoked).
        token = flag(words, "--token")
        deleted = cli(plane, tmp_path / "home", "token", "delete", token)
        assert deleted.returncode == 0, deleted.stderr
        first.stop()
        first.start(["--server", plane.address])
        first.wait_serving()
        assert first.credentials().cert_pem == node.cert_pem, "the restarted agent joined again"
        async with plane.client() as client:

            async def ready_again() -> bool:
                got = await client.get(Kind.NODE, first.name)
                return any(
                    c.type == "Ready" and c.status == "True" and c.reason == "AgentReady"
                    for c in got.status.conditions  # type: ignore[attr-defined]
                )

            await until(ready_again, f"{first.name} was not Ready after its restart")
        assert first.process is not None and first.process.poll() is None, first.log()
    finally:
        plane.stop()
