"""Apply refuses what the cluster's administrator did not allow (issue 11), with field paths.

Over the API (as a controller or any client other than `pilothouse apply` would send them):
- a readinessProbe with CR/LF in a header value is refused (InvalidArgument, the field path
  in the error details) and nothing is written;
- `host: 127.0.0.1` in a probe, and `seccompProfile: Unconfined`, are Forbidden by default,
  also inside a Deployment's pod template; a control plane run with `--allow-probe-host` and
  `--allow-unconfined-seccomp` accepts them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import pytest

from controlplane.api.server import ApiServer
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from pilothouse import kinds
from pilothouse.manifests import ClusterPolicy, set_defaults
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2
from tests import factories

FIELD_ERRORS_KEY = "pilothouse-field-errors-bin"


@asynccontextmanager
async def control_plane(policy: ClusterPolicy) -> AsyncIterator[api_grpc.ControlPlaneStub]:
    store = MemoryStore()
    server = ApiServer(objects=ObjectStore(store), listen="127.0.0.1:0", policy=policy)
    address = await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield api_grpc.ControlPlaneStub(channel)
    finally:
        await server.stop()
        await store.close()


def probed_pod(change: Callable[[objects_pb2.Probe], None]) -> objects_pb2.Pod:
    pod = factories.pod(name="web", containers=[factories.container(name="app")])
    probe = pod.spec.containers[0].readiness_probe
    probe.http_get.port.number_value = 8080
    change(probe)
    set_defaults(pod)
    return pod


async def refused_fields(stub: api_grpc.ControlPlaneStub, obj: object) -> set[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Apply(api.ApplyRequest(object=kinds.wrap(obj)), timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
    carried = dict(caught.value.trailing_metadata() or ())
    return {e.field for e in api.FieldErrors.FromString(carried[FIELD_ERRORS_KEY]).errors}


async def test_a_cr_lf_header_value_is_refused_at_apply_and_nothing_is_written() -> None:
    def smuggle(probe: objects_pb2.Probe) -> None:
        probe.http_get.http_headers.add(name="X-A", value="b\r\nGET /v3/kv/put HTTP/1.1")

    async with control_plane(ClusterPolicy(allow_probe_host=True)) as stub:
        fields = await refused_fields(stub, probed_pod(smuggle))
        assert fields == {"spec.containers[0].readinessProbe.httpGet.httpHeaders[0].value"}
        listing = await stub.List(api.ListRequest(kind="pods", namespace="default"), timeout=30)
        assert not listing.items, "a refused pod was written"


async def test_probe_hosts_and_unconfined_seccomp_need_the_admins_flags() -> None:
    def outside(probe: objects_pb2.Probe) -> None:
        probe.http_get.host = "127.0.0.1"

    deployment = factories.deployment(name="web", typed=True)
    spec = deployment.spec.template.spec
    spec.security_context.seccomp_profile.type = "Unconfined"
    spec.containers[0].liveness_probe.tcp_socket.port.number_value = 2379
    spec.containers[0].liveness_probe.tcp_socket.host = "127.0.0.1"
    set_defaults(deployment)
    async with control_plane(ClusterPolicy()) as stub:
        assert await refused_fields(stub, probed_pod(outside)) == {
            "spec.containers[0].readinessProbe.httpGet.host"
        }
        assert await refused_fields(stub, deployment) == {
            "spec.template.spec.securityContext.seccompProfile.type",
            "spec.template.spec.containers[0].livenessProbe.tcpSocket.host",
        }
    allowed = ClusterPolicy(allow_probe_host=True, allow_unconfined_seccomp=True)
    async with control_plane(allowed) as stub:
        for obj in (probed_pod(outside), deployment):
            applied = await stub.Apply(api.ApplyRequest(object=kinds.wrap(obj)), timeout=30)
            assert applied.result == api.ApplyResponse.CREATED
