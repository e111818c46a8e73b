"""Ephemeral-storage eviction decisions, on plain data and a scratch directory (issue 11).

What a user sees: a pod over its containers' summed ephemeral-storage limit is evicted with
Kubernetes' message ("Pod ephemeral local storage usage exceeds the total limit of containers
10Mi."), a container over its own limit with the kubelet's container message; under node disk
pressure the pod using most above its request goes first, and the node reports DiskPressure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeagent.pods import specs
from nodeagent.pods.eviction import (
    EvictionManager,
    Threshold,
    Usage,
    limit_violation,
    measure,
    rank,
)
from pilothouse.v1 import objects_pb2
from tests import factories

MiB = 1024 * 1024


def _pod(name: str, **limits: tuple[str, str]) -> objects_pb2.Pod:
    """A pod whose containers have (request, limit) of ephemeral-storage ("" for none)."""
    containers = []
    for cname, (request, limit) in limits.items():
        c = factories.container(name=cname)
        if request:
            c.resources.requests["ephemeral-storage"] = request
        if limit:
            c.resources.limits["ephemeral-storage"] = limit
        containers.append(c)
    return factories.pod(name=name, containers=containers)


def test_a_pod_over_its_total_limit_gets_kubernetes_message() -> None:
    pod = _pod("fill", app=("", "5Mi"), side=("", "5Mi"))
    usage = Usage(containers={"app": 9 * MiB, "side": 2 * MiB}, total=11 * MiB)
    assert limit_violation(pod, usage) == (
        "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi."
    )
    under = Usage(containers={"app": 4 * MiB, "side": 2 * MiB}, total=6 * MiB)
    assert limit_violation(pod, under) is None


def test_a_container_over_its_own_limit_is_named() -> None:
    pod = _pod("fill", app=("", "1Mi"), side=("", "100Mi"))
    usage = Usage(containers={"app": 2 * MiB, "side": 0}, total=2 * MiB)
    assert limit_violation(pod, usage) == (
        'Container app exceeded its local ephemeral storage limit "1Mi".'
    )
    assert limit_violation(_pod("free", app=("", "")), usage) is None, "no limit, no eviction"


def test_usage_counts_writable_layers_and_logs(tmp_path: Path) -> None:
    pod = _pod("fill", app=("", "10Mi"))
    writable = tmp_path / "containers"
    upper = writable / specs.container_id(pod, "app", 0) / "upper"
    upper.mkdir(parents=True)
    (upper / "blob").write_bytes(os.urandom(3 * MiB))
    other = writable / "default_fill2_app_0" / "upper"  # another pod's: not counted
    other.mkdir(parents=True)
    (other / "blob").write_bytes(os.urandom(MiB))
    log = specs.log_path(tmp_path, pod, "app", 0)
    log.parent.mkdir(parents=True)
    log.write_bytes(os.urandom(MiB))
    usage = measure(pod, state_dir=tmp_path, writable_root=writable)
    assert 4 * MiB <= usage.containers["app"] < 5 * MiB, usage
    assert usage.total >= usage.containers["app"]


def test_disk_pressure_ranks_pods_over_their_requests_first() -> None:
    modest = _pod("modest", app=("50Mi", ""))
    greedy = _pod("greedy", app=("1Mi", ""))
    big_but_asked = _pod("asked", app=("500Mi", ""))

    class W:
        def __init__(self, pod: objects_pb2.Pod) -> None:
            self.pod, self.evicted, self.stopping = pod, None, False

    ranked = rank(
        [
            (W(modest), Usage({"app": 40 * MiB}, 40 * MiB)),
            (W(big_but_asked), Usage({"app": 400 * MiB}, 400 * MiB)),
            (W(greedy), Usage({"app": 30 * MiB}, 30 * MiB)),
        ]
    )
    assert [w.pod.metadata.name for w, _ in ranked] == ["greedy", "modest", "asked"]


@pytest.mark.parametrize(
    ("text", "fraction", "size"),
    [("nodefs.available<10%", 0.10, None), ("nodefs.available<2Gi", 0.0, 2 * 1024**3)],
)
def test_thresholds_read_the_kubelets_form(text: str, fraction: float, size: int | None) -> None:
    assert Threshold.parse(text) == Threshold(fraction=fraction, bytes=size)
    with pytest.raises(ValueError, match=r"nodefs\.available"):
        Threshold.parse("memory.available<100Mi")


class FakeWorker:
    def __init__(self, pod: objects_pb2.Pod) -> None:
        self.pod = pod
        self.evicted: str | None = None
        self.stopping = False

    async def evict(self, message: str) -> None:
        self.evicted = message


async def test_under_pressure_one_pod_per_pass_is_evicted_and_disk_pressure_reported(
    tmp_path: Path,
) -> None:
    workers = [FakeWorker(_pod("a", app=("", ""))), FakeWorker(_pod("b", app=("", "")))]
    manager = EvictionManager(
        pods=lambda: workers,
        state_dir=tmp_path,
        threshold=Threshold(fraction=0.0, bytes=2**62),  # always below: pressure
        interval=0.01,
        transition=60,
    )
    assert manager.conditions()[0].status == "False"
    first = await manager.once()
    assert len(first) == 1, "the kubelet evicts one pod per pass under node pressure"
    condition = manager.conditions()[0]
    assert (condition.type, condition.status, condition.reason) == (
        "DiskPressure",
        "True",
        "KubeletHasDiskPressure",
    )
    message = next(w.evicted for w in workers if w.evicted)
    assert message.startswith("The node was low on resource: ephemeral-storage. Threshold ")
    await manager.once()
    assert all(w.evicted for w in workers)
    manager.threshold = Threshold(fraction=0.0, bytes=0)
    await manager.once()
    assert manager.disk_pressure, "DiskPressure left before its transition period"
    manager.transition = 0
    await manager.once()
    assert not manager.disk_pressure
