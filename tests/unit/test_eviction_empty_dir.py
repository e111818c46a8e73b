"""An emptyDir on the node's disk counts as the pod's local storage, and one past its
sizeLimit evicts the pod with the kubelet's words (a Memory one is memory, not disk)."""

from __future__ import annotations

from pathlib import Path

from nodeagent.pods import specs
from nodeagent.pods.eviction import Usage, limit_violation, measure
from tests import factories


def test_an_empty_dir_past_its_size_limit_evicts_the_pod(tmp_path: Path) -> None:
    pod = factories.pod(name="cache")
    pod.spec.volumes.add(name="scratch").empty_dir.size_limit = "1Mi"
    memory = pod.spec.volumes.add(name="fast").empty_dir
    memory.medium, memory.size_limit = "Memory", "1Mi"
    volumes = specs.pod_dir(tmp_path, pod) / "volumes" / "kubernetes.io~empty-dir"
    (volumes / "scratch").mkdir(parents=True)
    (volumes / "scratch" / "blob").write_bytes(b"x" * 2 * 1024 * 1024)
    (volumes / "fast").mkdir()
    (volumes / "fast" / "blob").write_bytes(b"x" * 2 * 1024 * 1024)
    usage = measure(pod, state_dir=tmp_path, writable_root=None)
    assert set(usage.volumes) == {"scratch"}, "a Memory emptyDir was counted as disk"
    assert usage.total >= 2 * 1024 * 1024
    assert limit_violation(pod, usage) == (
        'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".'
    )
    within = Usage(containers={"main": 0}, total=10, volumes={"scratch": 10})
    assert limit_violation(pod, within) is None
