"""The example app, as its README walks it: build -> push -> apply -> rebuild -> roll out -> undo.

A one-node `pilothouse up` cluster; the example is built with `pilothouse build` into a build
store of the test's own (its base image through the cluster registry's docker.io mirror),
pushed to the cluster's registry, and run. Ready pods mean the app answers: their readiness
probe asks its CGI script over HTTP. After a v2 and `rollout undo`, the pods run v1's digest.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from tests.fixtures.cluster import LocalClusterRun

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "examples" / "app"


def ready_image_ids(cluster: LocalClusterRun) -> list[str]:
    """imageID of each Ready pod of the example (one entry per pod)."""
    got = cluster.cli("get", "pods", "-o", "json")
    if got.returncode != 0 or not got.stdout.strip():
        return []
    data: Any = json.loads(got.stdout)
    out = []
    for item in data.get("items", [data]):
        if item.get("metadata", {}).get("labels", {}).get("app") != "example":
            continue
        if item.get("metadata", {}).get("deletionTimestamp"):
            continue
        statuses = item.get("status", {}).get("containerStatuses", [])
        out += [s.get("imageID", "") for s in statuses if s.get("ready")]
    return sorted(out)


def wait_for_digest(cluster: LocalClusterRun, digest: str, *, within: float = 120) -> list[str]:
    deadline = time.monotonic() + within
    seen = ready_image_ids(cluster)
    while seen != [digest, digest] and time.monotonic() < deadline:
        time.sleep(0.3)
        seen = ready_image_ids(cluster)
    return seen


def test_example_app_builds_runs_rolls_out_and_undoes(
    local_cluster: LocalClusterRun, tmp_path: Path
) -> None:
    up = local_cluster.up(nodes=1, network="host")
    assert up.returncode == 0, up.stderr
    registry = str(local_cluster.info()["registry"])
    mirrors = local_cluster.data_dir / "nodes" / "node-1" / "registries.yaml"
    assert mirrors.is_file(), f"`up` wrote no {mirrors}"
    store = tmp_path / "build-store"

    def build(version: str) -> str:
        done = local_cluster.cli(
            "build", "--root", str(store), "--registries", str(mirrors),
            "--build-arg", f"VERSION={version}", "-t", f"{registry}/example/app:{version}",
            "--push", str(EXAMPLE),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        match = re.search(r"digest: (sha256:[0-9a-f]{64}) \(pushed\)", done.stdout)
        assert match, done.stdout
        return match.group(1)

    v1 = build("v1")
    applied = local_cluster.cli("apply", "-f", str(EXAMPLE / "manifests" / "app.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert wait_for_digest(local_cluster, v1) == [v1, v1], "v1 pods never became Ready"

    v2 = build("v2")
    assert v2 != v1
    changed = local_cluster.cli("set", "image", "deployment/app", "app=example/app:v2")
    assert changed.returncode == 0, changed.stderr
    assert wait_for_digest(local_cluster, v2) == [v2, v2], "v2 was not rolled out"

    undone = local_cluster.cli("rollout", "undo", "deployment/app")
    assert undone.returncode == 0, undone.stderr
    assert wait_for_digest(local_cluster, v1) == [v1, v1], "undo did not bring back v1's digest"
