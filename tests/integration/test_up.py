"""`pilothouse up` / `down` with real processes: registry, control plane + etcd, runc agents.

Root only. Each test makes its own cluster in its own data dir and client config; the
`local_cluster` fixture removes everything at the end even when a test fails. These run the
nodes on the machine's network (`--network host`, the escape hatch); tests/e2e/test_cluster.py
covers the default, a network namespace per node.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pilothouse.cli.cluster import probes, processes
from tests.fixtures.cluster import (
    CLUSTER_COMMAND,
    LocalClusterRun,
    apply_sleepers,
    wait_for,
    wait_running,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

# An agent restart leaves its node silent for the supervisor's delay (0.5 s) plus the agent's
# start-up: 0.6-4.2 s at load 5-7, longer on a loaded machine, so the default 3 s grace and 2 s
# eviction would move its pods. The restart test promises that a restart moves nothing, so its
# cluster waits as long as Kubernetes does (5 min) before replacing a NotReady node's pods.
EVICTION = ["--pod-eviction-timeout", "300"]


def node_ready(cluster: LocalClusterRun, name: str) -> bool:
    """`get node NAME -o json` shows Ready=True."""
    got = cluster.cli("get", "node", name, "-o", "json")
    if got.returncode != 0 or not got.stdout.strip():
        return False
    conditions = json.loads(got.stdout).get("status", {}).get("conditions", [])
    return {"type": "Ready", "status": "True"} in [
        {"type": c.get("type"), "status": c.get("status")} for c in conditions
    ]


def argv(record: processes.ProcessRecord) -> list[str]:
    return Path(f"/proc/{record.pid}/cmdline").read_bytes().decode().split("\0")


async def wait_for_new_run(
    cluster: LocalClusterRun, name: str, old: processes.ProcessRecord, within: float = 30
) -> processes.ProcessRecord | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        record = cluster.child(name)
        if record is not None and record != old and record.alive():
            return record
        await asyncio.sleep(0.05)
    return None


async def test_up_runs_a_cluster_that_restarts_its_parts_and_down_removes_it(
    local_cluster: LocalClusterRun,
) -> None:
    started = local_cluster.up(nodes=2, network="host", flags=EVICTION)
    assert started.returncode == 0, f"`up -d --nodes 2` failed:\n{started.stderr}"
    assert "node-2" in started.stdout, f"`up` did not print the nodes:\n{started.stdout}"

    # The CLI finds the control plane (and, when secure, the admin's credentials) through the
    # config file `up` wrote.
    server = local_cluster.info()["controlplane"]
    admin, agent_tls = local_cluster.admin(), local_cluster.agent_tls()
    config = yaml.safe_load(local_cluster.client_config.read_text())
    assert config["server"] == server
    if local_cluster.secure:
        keys = ("ca-cert", "client-cert", "client-key")
        assert all(k in config for k in keys), f"no admin credentials in the CLI config: {config}"
    else:
        assert config == {"server": server}
    got = local_cluster.cli("get", "deployments")
    assert got.returncode == 0, f"`pilothouse get deployments` failed after up:\n{got.stderr}"
    etcd_dir = local_cluster.data_dir / "controlplane" / "etcd"
    assert os.stat(etcd_dir).st_dev != os.stat(local_cluster.data_dir).st_dev, (
        "etcd's data dir shares the disk with the pods: a pod filling it would stop etcd"
    )

    nodes = local_cluster.nodes()
    assert sorted(nodes) == ["node-1", "node-2"]
    for name, address in nodes.items():
        info = await probes.node_info(address, name=name, tls=agent_tls)
        assert info is not None and info.name == name, f"agent {name} does not answer NodeInfo"

    # The nodes registered, and a Deployment of busybox:stable (pulled through the docker.io
    # mirror from the local registry) runs as real containers on both.
    apply_sleepers(local_cluster, replicas=2)
    pods = wait_running(local_cluster, count=2)
    assert len(pods) == 2, f"2 replicas applied after up, Running: {pods}"
    assert sorted(pods.values()) == ["node-1", "node-2"], f"replicas not spread: {pods}"
    assert local_cluster.mounts(), "the running pods have no rootfs mount under the data dir"

    # kill -9 an agent: the supervisor starts it again, on the same address.
    old = local_cluster.child("node-2")
    assert old is not None and old.alive()
    os.kill(old.pid, signal.SIGKILL)
    new = await wait_for_new_run(local_cluster, "node-2", old)
    assert new is not None and new.pid != old.pid, "a killed agent was not started again"
    answered = False
    for _ in range(200):
        if await probes.agent_serves(nodes["node-2"], name="node-2", tls=agent_tls):
            answered = True
            break
        await asyncio.sleep(0.1)
    assert answered, "the restarted agent node-2 does not answer NodeInfo at its address"
    # Ready (again, once registered and fenced if it was marked NotReady): nothing moved.
    wait_for("node-2 Ready again", lambda: node_ready(local_cluster, "node-2"))
    assert wait_running(local_cluster, count=2) == pods, "the agent's restart changed the pods"

    # kill -9 the control plane: it comes back on the same address, with its data.
    old = local_cluster.child("controlplane")
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    new = await wait_for_new_run(local_cluster, "controlplane", old)
    assert new is not None, "a killed control plane was not started again"
    # `up`'s own flags for the control plane are in every run of it.
    assert " ".join(EVICTION) in " ".join(argv(new)), f"up's flags are lost: {argv(new)}"
    for _ in range(300):
        if await probes.controlplane_serves(str(server), tls=admin):
            break
        await asyncio.sleep(0.1)
    got = local_cluster.cli("get", "deployments")
    assert got.returncode == 0, f"the CLI cannot reach the restarted control plane:\n{got.stderr}"

    supervisor = local_cluster.supervisor()
    stopped = local_cluster.down()
    assert stopped.returncode == 0, f"`down` failed:\n{stopped.stderr}"
    assert supervisor is not None and not supervisor.alive(), "`up` still runs after down"
    assert local_cluster.running_processes() == [], "processes of the cluster survive `down`"
    assert local_cluster.mounts() == [], "mounts under the data dir survive `down`"
    assert local_cluster.cgroups() == [], "cgroups of the cluster survive `down`"
    config = yaml.safe_load(local_cluster.client_config.read_text())
    assert not config, f"the CLI still points at a stopped cluster: {config}"
    assert sorted(p.name for p in local_cluster.data_dir.iterdir()) == ["up.log"]

    again = local_cluster.down()
    assert again.returncode == 0, f"a second `down` failed:\n{again.stderr}"
    assert "no local cluster" in again.stdout


async def test_down_cleans_up_after_the_supervisor_was_killed(
    local_cluster: LocalClusterRun,
) -> None:
    started = local_cluster.up(nodes=1, network="host")
    assert started.returncode == 0, f"`up -d` failed:\n{started.stderr}"
    apply_sleepers(local_cluster, replicas=1)
    assert len(wait_running(local_cluster, count=1)) == 1, "the pod never ran"
    supervisor = local_cluster.supervisor()
    assert supervisor is not None

    os.kill(supervisor.pid, signal.SIGKILL)  # a crash: the children keep running
    for _ in range(500):
        if not supervisor.alive():
            break
        await asyncio.sleep(0.02)
    assert local_cluster.running_processes(), "the children died with the supervisor"

    stopped = local_cluster.down()
    assert stopped.returncode == 0, f"`down` after a crash failed:\n{stopped.stderr}"
    assert local_cluster.running_processes() == [], "processes survive `down` after a crash"
    assert local_cluster.mounts() == [], "mounts survive `down` after a crash"
    assert local_cluster.cgroups() == [], "cgroups survive `down` after a crash"


def test_ctrl_c_stops_a_foreground_cluster_and_removes_it(
    local_cluster: LocalClusterRun,
) -> None:
    command = [*CLUSTER_COMMAND, "up", "--nodes", "1", "--network", "host"]
    command += ["--data-dir", str(local_cluster.data_dir)]
    proc = subprocess.Popen(
        command,
        env=local_cluster.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not local_cluster.layout.cluster_file.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "a foreground `up` never became ready"
            time.sleep(0.1)
        assert proc.poll() is None, "a foreground `up` exited before it was stopped"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, "Ctrl-C did not stop the foreground cluster cleanly"
    assert local_cluster.running_processes() == [], "processes survive Ctrl-C"
    assert local_cluster.mounts() == []


def test_a_second_up_on_a_running_data_dir_is_refused(local_cluster: LocalClusterRun) -> None:
    assert local_cluster.up(nodes=1, network="host").returncode == 0
    second = local_cluster.up(nodes=1, network="host")
    assert second.returncode != 0
    assert "already runs" in second.stderr and "pilothouse down" in second.stderr
