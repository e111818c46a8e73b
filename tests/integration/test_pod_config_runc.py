"""Pod configuration on real runc containers, verified from inside them (issue 14).

One agent (tests.integration.test_probes.runc_agent) gets pods and the ConfigMaps and Secrets
they use over SyncPods; each container prints what it sees to its log, read back with Logs:
- securityContext: `id` shows runAsUser/runAsGroup/supplementalGroups (and fsGroup), a write
  to the read-only root fails, dropped capabilities are absent from /proc/self/status, the
  default seccomp filter is on and blocks unshare(CLONE_NEWUSER);
- volumes: an emptyDir shared by two containers, a `medium: Memory` one a tmpfs of its
  sizeLimit on the node, both gone with the pod; a ConfigMap's file changes within 10 s of a
  push while its subPath mount and the env var read from it do not; a Secret's file and env;
- the pod's containers share one IPC namespace, and with shareProcessNamespace see each
  other's processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import grpc
import pytest

from nodeagent.pods.volumes.host import mounts_below
from pilothouse import manifests
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests import factories
from tests.integration.test_agent import wait_for
from tests.integration.test_probes import runc_agent

pytestmark = [pytest.mark.root, pytest.mark.slow]

SECRET = b"hunter2-from-a-secret"


def pod(name: str, *containers: objects_pb2.Container) -> objects_pb2.Pod:
    made = factories.pod(name=name, grace=1, containers=list(containers))
    manifests.set_defaults(made)
    return made


def config_map(data: dict[str, str]) -> objects_pb2.ConfigMap:
    return objects_pb2.ConfigMap(
        metadata=objects_pb2.ObjectMeta(name="cfg", namespace="default"), data=data
    )


def secret() -> objects_pb2.Secret:
    return objects_pb2.Secret(
        metadata=objects_pb2.ObjectMeta(name="creds", namespace="default"),
        data={"password": SECRET},
    )


async def logs(stub: agent_pb2_grpc.NodeAgentStub, name: str, container: str) -> str:
    out = b""
    async for chunk in stub.Logs(
        agent_pb2.LogsRequest(namespace="default", pod=name, container=container, tail_lines=-1)
    ):
        out += chunk.data
    return out.decode()


async def until_logged(
    stub: agent_pb2_grpc.NodeAgentStub, name: str, container: str, text: str, *, within: float
) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen = ""
    while loop.time() < deadline:
        try:
            seen = await logs(stub, name, container)
        except grpc.aio.AioRpcError:
            seen = ""
        if text in seen:
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}/{container} never logged {text!r} within {within} s:\n{seen}")


def running(name: str) -> object:
    return lambda pods: name in pods and pods[name].status.phase == "Running"


async def test_security_context_as_seen_from_inside() -> None:
    app = factories.container(
        name="app",
        script="id; touch /written 2>&1 || true; grep -E '^(CapBnd|CapEff|Seccomp):' "
        "/proc/self/status; unshare -U true 2>&1 || echo unshare-refused; echo checked; "
        "exec sleep 3600",
    )
    context = app.security_context
    context.read_only_root_filesystem = True
    context.allow_privilege_escalation = False
    context.capabilities.drop.append("ALL")
    context.capabilities.add.append("NET_BIND_SERVICE")
    secure = pod("secure", app)
    secure.spec.security_context.run_as_user = 1000
    secure.spec.security_context.run_as_group = 3000
    secure.spec.security_context.supplemental_groups.append(4000)
    secure.spec.security_context.fs_group = 2000
    async with (
        runc_agent("--backoff-initial", "0.2") as agent,
        grpc.aio.insecure_channel(agent.address) as channel,
    ):
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[secure]))
        await wait_for(stub, "Running", running("secure"))
        seen = await until_logged(stub, "secure", "app", "checked", within=30)
        assert "uid=1000 gid=3000 groups=2000,4000" in seen or (
            "uid=1000 gid=3000 groups=4000,2000" in seen
        ), f"`id` in the container:\n{seen}"
        assert "Read-only file system" in seen, f"the root was writable:\n{seen}"
        caps = dict(
            line.split(":", 1) for line in seen.splitlines() if line.startswith(("Cap", "Sec"))
        )
        assert int(caps["CapBnd"].strip(), 16) == 1 << 10, "only CAP_NET_BIND_SERVICE (10)"
        assert caps["Seccomp"].strip() == "2", "no seccomp filter in the container"
        assert "unshare-refused" in seen, f"unshare(CLONE_NEWUSER) was allowed:\n{seen}"


async def test_volumes_files_and_env_from_configmaps_and_secrets() -> None:
    writer = factories.container(
        name="writer",
        script="echo from-writer > /shared/note; echo ipc=$(readlink /proc/self/ns/ipc); "
        "exec sleep 3600",
    )
    writer.volume_mounts.add(name="shared", mount_path="/shared")
    writer.volume_mounts.add(name="mem", mount_path="/mem")
    reader = factories.container(
        name="reader",
        script="echo ipc=$(readlink /proc/self/ns/ipc); "
        "echo secret-file=$(sha256sum < /creds/password | cut -d' ' -f1) "
        "secret-env=$(printf %s \"$PASSWORD\" | sha256sum | cut -d' ' -f1); "
        'while true; do echo "tick file=$(cat /conf/color) sub=$(cat /one) env=$COLOR '
        'shared=$(cat /shared/note 2>/dev/null)"; sleep 0.5; done',
    )
    reader.volume_mounts.add(name="shared", mount_path="/shared")
    reader.volume_mounts.add(name="conf", mount_path="/conf")
    reader.volume_mounts.add(name="conf", mount_path="/one", sub_path="color")
    reader.volume_mounts.add(name="creds", mount_path="/creds", read_only=True)
    ref = reader.env.add(name="COLOR").value_from.config_map_key_ref
    ref.name, ref.key = "cfg", "color"
    password = reader.env.add(name="PASSWORD").value_from.secret_key_ref
    password.name, password.key = "creds", "password"
    app = pod("files", writer, reader)
    app.spec.volumes.add(name="shared").empty_dir.SetInParent()
    memory = app.spec.volumes.add(name="mem").empty_dir
    memory.medium, memory.size_limit = "Memory", "8Mi"
    app.spec.volumes.add(name="conf").config_map.name = "cfg"
    app.spec.volumes.add(name="creds").secret.secret_name = "creds"
    manifests.set_defaults(app)
    async with (
        runc_agent("--backoff-initial", "0.2") as agent,
        grpc.aio.insecure_channel(agent.address) as channel,
    ):
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        pushed = agent_pb2.SyncPodsRequest(
            pods=[app], config_maps=[config_map({"color": "blue"})], secrets=[secret()]
        )
        await stub.SyncPods(pushed)
        await wait_for(stub, "Running", running("files"))
        seen = await until_logged(stub, "files", "reader", "shared=from-writer", within=30)
        digest = hashlib.sha256(SECRET).hexdigest()
        assert f"secret-file={digest} secret-env={digest}" in seen, seen
        writer_seen = await logs(stub, "files", "writer")
        ipc = {line for line in (seen + writer_seen).splitlines() if line.startswith("ipc=")}
        assert len(ipc) == 1, f"the pod's containers do not share one IPC namespace: {ipc}"
        pod_dir = agent.state / "pods" / "default_files_uid-files"
        volumes = pod_dir / "volumes"
        mem = volumes / "kubernetes.io~empty-dir" / "mem"
        tmpfs = _mount_options(mem)
        assert tmpfs is not None and tmpfs[0] == "tmpfs", f"medium Memory is not a tmpfs: {tmpfs}"
        assert "size=8192k" in tmpfs[1], f"the tmpfs has no size limit of 8Mi: {tmpfs}"
        creds = volumes / "kubernetes.io~secret" / "creds"
        assert (_mount_options(creds) or ("",))[0] == "tmpfs", "a Secret's files are on disk"
        on_disk = _files_holding(agent.state, SECRET)
        assert not on_disk, (
            f"a Secret's value is on the node's disk (runc state, bundles…): {on_disk}"
        )
        # The ConfigMap changes: the file within 10 s, the subPath and the env never.
        changed = agent_pb2.SyncPodsRequest(
            pods=[app], config_maps=[config_map({"color": "green"})], secrets=[secret()]
        )
        await stub.SyncPods(changed)
        seen = await until_logged(stub, "files", "reader", "file=green", within=10)
        last = [line for line in seen.splitlines() if "file=green" in line][-1]
        assert "sub=blue" in last, f"the subPath mount changed: {last}"
        assert "env=blue" in last, f"the env var changed without a restart: {last}"
        # Everything the pod mounted goes with it.
        await stub.SyncPods(agent_pb2.SyncPodsRequest())
        for _ in range(100):
            if not pod_dir.exists():
                break
            await asyncio.sleep(0.1)
        assert not mounts_below(pod_dir), "a volume of the pod is still mounted"
        assert not pod_dir.exists(), "the pod's directory (its volumes) stayed"


async def test_share_process_namespace_shows_the_other_containers() -> None:
    one = factories.container(name="one", script="exec sleep 3601")
    two = factories.container(
        name="two", script="while true; do ps -o pid,args | tr -s ' '; sleep 1; done"
    )
    shared = pod("shared", one, two)
    shared.spec.share_process_namespace = True
    async with (
        runc_agent("--backoff-initial", "0.2") as agent,
        grpc.aio.insecure_channel(agent.address) as channel,
    ):
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[shared]))
        await wait_for(stub, "Running", running("shared"))
        seen = await until_logged(stub, "shared", "two", "sleep 3601", within=30)
        assert " 1 " in seen or "\n1 " in seen, f"no PID 1 (the pod's pause) in:\n{seen}"
        pause = agent.state / "pods" / "default_shared_uid-shared" / "ns" / "pause.pid"
        pid = int(pause.read_text())
        await stub.SyncPods(agent_pb2.SyncPodsRequest())
        for _ in range(100):
            if not _alive(pid):
                break
            await asyncio.sleep(0.1)
        assert not _alive(pid), "the pod's pause process outlived it"


def _files_holding(root: Path, needle: bytes) -> list[str]:
    """Files on disk under `root` (tmpfs mounts, memory, skipped) that contain `needle`."""
    memory = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            if fields[fields.index("-") + 1] == "tmpfs":
                memory.append(Path(fields[4]))
    found = []
    for path in root.rglob("*"):
        if any(m == path or m in path.parents for m in memory):
            continue
        try:
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _mount_options(path: Path) -> tuple[str, str] | None:
    """(fs type, super options) of the mount at `path`, from /proc/self/mountinfo."""
    want = str(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            if fields[4] == want:
                dash = fields.index("-")
                return fields[dash + 1], fields[dash + 3]
    return None


async def test_init_containers_retry_then_sidecar_first_and_last(tmp_path: Path) -> None:
    """An init container fails twice and is retried, the main container starts only after it
    succeeded (postStart runs); when the pod goes, its preStop hook runs before SIGTERM, and a
    sidecar started before everything stops after it (marks in a hostPath)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    setup = factories.container(
        name="setup",
        script="n=$(cat /work/n 2>/dev/null || echo 0); echo $((n+1)) > /work/n; "
        'echo "setup-attempt $n" >> /marks/log; [ "$n" -ge 2 ]',
    )
    setup.volume_mounts.add(name="work", mount_path="/work")
    setup.volume_mounts.add(name="marks", mount_path="/marks")
    sidecar = factories.container(
        name="proxy",
        script="echo proxy-started >> /marks/log; "
        "trap 'echo proxy-stopped >> /marks/log; exit 0' TERM; sleep 100000 & wait",
    )
    sidecar.restart_policy = "Always"
    sidecar.volume_mounts.add(name="marks", mount_path="/marks")
    app = factories.container(
        name="app",
        script="echo app-started-after-$(cat /work/n) >> /marks/log; "
        "trap 'echo app-stopped >> /marks/log; exit 0' TERM; sleep 100000 & wait",
    )
    app.volume_mounts.add(name="work", mount_path="/work")
    app.volume_mounts.add(name="marks", mount_path="/marks")
    app.lifecycle.post_start.exec.command[:] = ["sh", "-c", "echo app-post-start >> /marks/log"]
    app.lifecycle.pre_stop.exec.command[:] = ["sh", "-c", "echo app-pre-stop >> /marks/log"]
    made = factories.pod(name="ordered", grace=5, containers=[app])
    made.spec.init_containers.extend([sidecar, setup])
    made.spec.volumes.add(name="work").empty_dir.SetInParent()
    host = made.spec.volumes.add(name="marks").host_path
    host.path, host.type = str(marks), "Directory"
    manifests.set_defaults(made)
    async with (
        runc_agent("--backoff-initial", "0.2") as agent,
        grpc.aio.insecure_channel(agent.address) as channel,
    ):
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[made]))
        seen = await wait_for(stub, "Running", running("ordered"))
        statuses = {s.name: s for s in seen["ordered"].status.init_container_statuses}
        assert statuses["setup"].restart_count == 2, statuses["setup"]
        await stub.SyncPods(agent_pb2.SyncPodsRequest())
        for _ in range(150):
            if "proxy-stopped" in _text(marks / "log"):
                break
            await asyncio.sleep(0.1)
    lines = _text(marks / "log").splitlines()
    assert lines[0] == "proxy-started", lines
    assert [line for line in lines if line.startswith("setup-attempt")] == [
        "setup-attempt 0",
        "setup-attempt 1",
        "setup-attempt 2",
    ]
    assert lines.index("app-started-after-3") > lines.index("setup-attempt 2"), lines
    assert "app-post-start" in lines, lines
    assert lines[-3:] == ["app-pre-stop", "app-stopped", "proxy-stopped"], (
        f"preStop, then SIGTERM, then the sidecar last: {lines}"
    )


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
