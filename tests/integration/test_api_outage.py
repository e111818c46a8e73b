"""The control plane through an etcd outage and through its own stop: what a client sees.

The process is never restarted here: after etcd comes back, the same control plane serves
again, and an open watch carries on.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from pilothouse import kinds
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.fixtures.controlplane import ControlPlaneProcess
from tests.fixtures.etcd import EtcdServer

# A bare Deployment: no namespace (the API defaults it), no labels of its own.
deployment = functools.partial(factories.deployment, namespace="", labels={})


def apply_request(obj: objects_pb2.Deployment) -> api.ApplyRequest:
    return api.ApplyRequest(object=kinds.wrap(obj))


async def eventually(call: Callable[[], Awaitable[api.ApplyResponse]], *, within: float):
    """Retry `call` while it is UNAVAILABLE, as a client would, for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def test_apply_is_unavailable_while_etcd_is_down_and_works_once_it_is_back(
    etcd_server: EtcdServer,
    control_plane_factory: Callable[..., ControlPlaneProcess],
) -> None:
    plane = control_plane_factory(
        etcd_endpoints=[etcd_server.endpoint], flags=etcd_server.client_flags()
    )
    assert plane.process is not None
    pid = plane.process.pid
    async with plane.channel() as channel:
        stub = api_grpc.ControlPlaneStub(channel)
        await stub.Apply(apply_request(deployment(name="before")), timeout=30)
        watch = stub.Watch(api.WatchRequest(kind="deployments", namespace="default"))
        try:
            first = await asyncio.wait_for(watch.read(), 20)
            assert first.object.deployment.metadata.name == "before"

            etcd_server.stop()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Apply(apply_request(deployment(name="during")), timeout=30)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (
                f"Apply with etcd down gave {caught.value.code()}, not UNAVAILABLE"
            )
            assert "etcd is unavailable" in caught.value.details()
            assert "keeps retrying" in caught.value.details()

            etcd_server.start()
            created = await eventually(
                lambda: stub.Apply(apply_request(deployment(name="after")), timeout=30), within=30
            )
            assert created.result == api.ApplyResponse.CREATED
            assert plane.running and plane.process.pid == pid, "the control plane was restarted"

            # The watch opened before the outage carries on and sees the new object (after
            # any status write the deployment controller makes to "before" meanwhile).
            async def next_about_after() -> api.WatchEvent:
                while True:
                    event = await watch.read()
                    assert event is not grpc.aio.EOF, "the watch ended during the outage"
                    if event.object.deployment.metadata.name == "after":
                        return event

            event = await asyncio.wait_for(next_about_after(), 30)
            assert event.type == api.WatchEvent.ADDED, (
                "a watch opened before the outage did not resume after it"
            )
        finally:
            watch.cancel()
        got = await stub.Get(api.GetRequest(kind="deployments", name="before"), timeout=30)
        assert got.deployment.metadata.name == "before", "data written before the outage is lost"


async def test_embedded_etcd_that_dies_is_restarted_under_the_running_control_plane(
    control_plane: ControlPlaneProcess,
) -> None:
    assert control_plane.process is not None
    pid = control_plane.process.pid
    async with control_plane.channel() as channel:
        stub = api_grpc.ControlPlaneStub(channel)
        await stub.Apply(apply_request(deployment(name="before")), timeout=30)
        etcd_pid = control_plane.etcd_pid()
        assert etcd_pid is not None, "no etcd child found under the control plane"
        os.kill(etcd_pid, signal.SIGKILL)

        created = await eventually(
            lambda: stub.Apply(apply_request(deployment(name="after")), timeout=30), within=60
        )
        assert created.result == api.ApplyResponse.CREATED
        assert control_plane.running and control_plane.process.pid == pid
        new_etcd = control_plane.etcd_pid()
        assert new_etcd is not None and new_etcd != etcd_pid, "etcd was not restarted"
        listing = await stub.List(api.ListRequest(kind="deployments"), timeout=30)
        names = sorted(item.deployment.metadata.name for item in listing.items)
        assert names == ["after", "before"], f"objects after the etcd crash: {names}"


def test_sigterm_stops_cleanly_with_its_etcd_and_keeps_the_data(
    control_plane: ControlPlaneProcess,
) -> None:
    asyncio.run(_call(control_plane, "Apply", apply_request(deployment(name="kept"))))
    etcd_pid = control_plane.etcd_pid()
    assert etcd_pid is not None and control_plane.process is not None
    control_plane.process.send_signal(signal.SIGTERM)
    code = control_plane.process.wait(30)
    assert code == 0, (
        f"the control plane exited with {code} on SIGTERM:\n{control_plane.log_tail()}"
    )
    assert not (control_plane.data_dir / "controlplane.addr").exists(), (
        "the address file outlived the control plane, so tools would try a dead address"
    )
    assert not os.path.exists(f"/proc/{etcd_pid}") or _is_zombie(etcd_pid), (
        "the embedded etcd kept running after the control plane stopped"
    )
    control_plane.stop()

    control_plane.start()
    got = asyncio.run(_call(control_plane, "Get", api.GetRequest(kind="deployments", name="kept")))
    assert got.deployment.metadata.name == "kept", "a restarted control plane lost its data"


async def _call(plane: ControlPlaneProcess, method: str, request):
    async with plane.channel() as channel:
        return await getattr(api_grpc.ControlPlaneStub(channel), method)(request, timeout=30)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
