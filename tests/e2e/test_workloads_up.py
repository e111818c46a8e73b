"""Issue 15 on `pilothouse up --nodes 3` (each node in a network namespace, mTLS), end to end
through the CLI as a user types it:
- a DaemonSet runs 3 pods, one on each node (`get ds` 3/3/3, `get pods -o wide`);
- a CronJob scheduled every minute creates a Job on the next whole minute (one real minute),
  whose pod runs to completion (`get jobs` Complete 1/1, `logs job/NAME`);
- the built-in local-path class is the cluster's default (`get sc`), and a claim used by a pod
  made with its node (`nodeName: node-2`, as DaemonSet pods are: the scheduler never sees it)
  is provisioned on that node, under the cluster's data dir, and mounted: the pod writes a
  file there;
`down` then leaves nothing of the cluster, its volumes included (the fixture checks and
cleans).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.network import missing_support
from tests.fixtures.cluster import LocalClusterRun, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]


MANIFEST = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logger}
spec:
  selector: {matchLabels: {app: logger}}
  template:
    metadata: {labels: {app: logger}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: logger
        image: busybox:stable
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: tick
            image: busybox:stable
            command: ["sh", "-c", "echo tick"]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: notes}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: busybox:stable
    command: ["sh", "-c", "echo kept > /data/note; trap 'exit 0' TERM; sleep 100000 & wait"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: notes}
"""


@pytest.fixture
def cluster(local_cluster: LocalClusterRun) -> Iterator[LocalClusterRun]:
    if reason := missing_support():
        pytest.skip(reason)
    yield local_cluster


def items(cluster: LocalClusterRun, *args: str) -> list[dict]:
    got = cluster.cli("get", *args, "-o", "json")
    if got.returncode != 0 or not got.stdout.strip():
        return []
    data = json.loads(got.stdout)
    return list(data.get("items", [data]))


def test_a_daemonset_on_three_nodes_and_a_cronjob_every_minute(cluster: LocalClusterRun) -> None:
    started = cluster.up(nodes=3)
    assert started.returncode == 0, f"`up -d --nodes 3` failed:\n{started.stderr}"
    manifest = cluster.data_dir.parent / "workloads.yaml"
    manifest.write_text(MANIFEST)
    applied = cluster.cli("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    applied_at = time.time()

    def spread() -> dict[str, str] | None:
        running = {
            p["metadata"]["name"]: p["spec"].get("nodeName", "")
            for p in items(cluster, "pods", "-l", "app=logger")
            if p.get("status", {}).get("phase") == "Running"
        }
        return running if len(set(running.values())) == 3 and len(running) == 3 else None

    placed = wait_for("a DaemonSet pod Running on each of the 3 nodes", spread, within=120)
    assert sorted(placed.values()) == ["node-1", "node-2", "node-3"]
    shown = cluster.cli("get", "ds", "logger")
    assert shown.stdout.splitlines()[1].split()[:6] == ["logger", "3", "3", "3", "3", "3"], shown

    def completed_job() -> str | None:
        for job in items(cluster, "jobs"):
            conditions = job.get("status", {}).get("conditions", [])
            if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
                return str(job["metadata"]["name"])
        return None

    # The next whole minute after the apply, then the Job's pod: within two minutes.
    name = wait_for("a Job made by the CronJob ran to completion", completed_job, within=150)
    assert name.startswith("tick-")
    scheduled = int(name.removeprefix("tick-")) * 60
    assert scheduled >= applied_at - 60, "the Job is for a minute before the CronJob existed"
    logs = cluster.cli("logs", f"job/{name}")
    assert logs.stdout.strip() == "tick", logs
    jobs = cluster.cli("get", "jobs")
    row = next(line.split() for line in jobs.stdout.splitlines() if line.startswith(name))
    assert row[1:3] == ["Complete", "1/1"], jobs.stdout
    cronjob = cluster.cli("get", "cronjobs")
    assert cronjob.stdout.splitlines()[1].split()[:2] == ["tick", "*/1"], cronjob.stdout
    classes = cluster.cli("get", "sc")
    assert "local-path (default)" in classes.stdout, classes.stdout

    def pinned_running() -> dict | None:
        pods = [p for p in items(cluster, "pod", "pinned") if p["metadata"]["name"] == "pinned"]
        running = pods and pods[0].get("status", {}).get("phase") == "Running"
        return pods[0] if running else None

    pod = wait_for("the pod made with its node Running with its claim", pinned_running, within=90)
    assert pod["spec"]["nodeName"] == "node-2"
    claim = items(cluster, "pvc", "notes")[0]
    assert claim["status"]["phase"] == "Bound", claim
    volume = items(cluster, "pv", claim["spec"]["volumeName"])[0]
    path = Path(volume["spec"]["hostPath"]["path"])
    storage = cluster.data_dir / "storage"
    assert path.parent == storage, f"the volume is at {path}, not under {storage}"
    assert pod["metadata"]["annotations"]["pilothouse.io/volume.data"] == str(path)
    note = wait_for(
        "the pod's file on its volume",
        lambda: (path / "note").exists() and (path / "note").read_text(),
        within=30,
    )
    assert note == "kept\n"
    down = cluster.down()
    assert down.returncode == 0, f"`down` failed:\n{down.stderr}"
    assert not storage.exists(), f"`down` left the cluster's volumes in {storage}"
