"""One hollow node: a real node to the control plane with no containers behind it.

It goes the way an agent goes (see `nodeagent.main`): its credentials first (loaded from
`<state-dir>/<name>/pki/`, or joined with the token: token → CSR → certificate, the agent's
`NodeCertificates`), then its own gRPC server with the agent's `NodeAgentServicer` over
`HollowPods`, mutual TLS admitting only the control plane's identity, then registration and
heartbeats (the agent's `Registration`) once it serves, and certificate renewal. The only
thing that is not the agent's is what runs pods.

Invariants: the node labels itself `node.kubernetes.io/instance-type=hollow` (for users to
select; the control plane never looks at it); its pods' addresses come from the pod CIDR its
registration returned.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import structlog

from nodeagent.api import nodeinfo
from nodeagent.api.server import agent_server
from nodeagent.api.servicer import NodeAgentServicer
from nodeagent.hollow.pods import HollowPods
from nodeagent.join import NodeCertificates
from nodeagent.registration import Registration, load_instance_id
from pilothouse import credentials, pki
from pilothouse.process.runnable import Task, run_all
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

HOLLOW_LABEL = "node.kubernetes.io/instance-type"  # a label a node may set on itself


@dataclass(frozen=True, slots=True)
class HollowSettings:
    """What every hollow node of one process shares."""

    server: str
    state_dir: Path
    join_server: str = ""
    token_file: Path | None = None
    ca_cert_hash: str = ""
    insecure: bool = False
    node_ip: str = "127.0.0.1"
    start_delay: float = 0.0
    failure_rate: float = 0.0
    max_pods: int = 110


class HollowNode:
    """A runnable: one simulated node, `run()` until cancelled."""

    def __init__(
        self,
        name: str,
        *,
        settings: HollowSettings,
        facts: nodeinfo.NodeFacts,
        join_slots: asyncio.Semaphore,
        seed: int = 0,
    ) -> None:
        self.name = name
        self._settings = settings
        self._facts = facts
        self._join_slots = join_slots
        self._seed = seed
        self._pod_cidr = ""
        self.registered = asyncio.Event()

    async def run(self) -> None:
        settings = self._settings
        directory = settings.state_dir / self.name
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        certs = None
        if not settings.insecure:
            certs = NodeCertificates(
                directory / "pki",
                node_name=self.name,
                server=settings.server,
                join_server=settings.join_server,
                token_file=settings.token_file,
                ca_cert_hash=settings.ca_cert_hash,
            )
            async with self._join_slots:  # the join port serves a few calls per peer
                await certs.ensure()
        pods = HollowPods(
            host_ip=settings.node_ip,
            pod_cidr=lambda: self._pod_cidr,
            max_pods=settings.max_pods,
            start_delay=settings.start_delay,
            failure_rate=settings.failure_rate,
            rng=random.Random(self._seed),
        )
        servicer = NodeAgentServicer(name=self.name, pods=cast(Any, pods), facts=self._facts)
        listen = f"{settings.node_ip}:0"
        server = (
            agent_server(servicer=servicer, listen=listen)
            if certs is None
            else agent_server(
                servicer=servicer,
                listen=listen,
                credentials=certs.server_credentials(),
                interceptors=[credentials.require_identity(pki.CONTROLPLANE)],
            )
        )
        facts = self._facts
        try:
            address = await server.start()
            registration = Registration(
                server=settings.server,
                node_name=self.name,
                instance_id=load_instance_id(directory),
                node_status=lambda: objects_pb2.NodeStatus(
                    capacity=facts.capacity, allocatable=facts.allocatable, node_info=facts.info
                ),
                agent_address=address,
                labels={HOLLOW_LABEL: "hollow"},
                tls=certs.material if certs is not None else None,
                on_registered=self._registered,
            )
            parts = [server, Task("registration", registration.run)]
            if certs is not None:
                parts.append(Task("certs", certs.run))
            await run_all(parts)
        finally:
            pods.close()
            await server.stop()

    def _registered(self, node: objects_pb2.Node) -> None:
        self._pod_cidr = node.spec.pod_cidr
        self.registered.set()
