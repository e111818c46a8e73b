"""The CLI over the in-process API for issue 15's kinds: apply and get with kubectl's columns,
bad input refused with its field path and nothing written, create job --from=cronjob,
create namespace, wait --for=condition=complete, delete --cascade."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pilothouse.kinds import Kind
from tests.unit.cli_support import Cli

GOOD = """\
apiVersion: v1
kind: Namespace
metadata: {name: batch}
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: batch}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: busybox:stable, command: [sh, -c, "echo 3.14"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick, namespace: batch}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    metadata: {labels: {app: tick}}
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: tick, image: busybox:stable, command: [date]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: batch}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox:stable}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: batch}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:stable
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: scratch, namespace: batch}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {requests: {storage: 2Gi}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: pilothouse.io/local-path
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: builder, namespace: batch}
"""


async def test_apply_then_get_shows_kubectl_columns(pilothouse: Cli, tmp_path: Path) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(GOOD)
    code, out, err = await pilothouse("apply", "-f", str(manifest))
    assert code == 0, err
    assert "job.batch/pi created" in out and "statefulset.apps/web created" in out
    expected = {
        "jobs": "NAME   STATUS    COMPLETIONS   DURATION   AGE",
        "cronjobs": "NAME   SCHEDULE      TIMEZONE   SUSPEND   ACTIVE   LAST SCHEDULE   AGE",
        "ds": "NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE",
        "sts": "NAME   READY   AGE",
        "pvc": "NAME      STATUS   VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS",
        "sa": "NAME      SECRETS   AGE",
    }
    for kind, header in expected.items():
        code, out, err = await pilothouse("get", kind, "-n", "batch")
        assert code == 0, err
        assert out.splitlines()[0].startswith(header), f"{kind}: {out}"
    code, out, _ = await pilothouse("get", "jobs", "-n", "batch")
    assert out.splitlines()[1].split()[:3] == ["pi", "Running", "0/5"]
    code, out, _ = await pilothouse("get", "sts", "-n", "batch")
    assert out.splitlines()[1].split()[:2] == ["web", "0/3"]
    code, out, _ = await pilothouse("get", "sc")
    assert out.splitlines()[1].split()[:3] == [
        "local-path",
        "(default)",
        "pilothouse.io/local-path",
    ]
    code, out, _ = await pilothouse("get", "ns")
    assert [line.split()[:2] for line in out.splitlines()[1:]][:1] == [["batch", "Active"]]


BAD = {
    "parallelism": (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  parallelism: -1\n"
        "  template:\n    spec:\n      restartPolicy: Never\n"
        "      containers: [{name: c, image: busybox}]\n",
        "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
    ),
    "cron": (
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: bad}\nspec:\n"
        "  schedule: '* * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n"
        "          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n",
        'spec.schedule: Invalid value: "* * * *": expected exactly 5 fields, found 4',
    ),
    "servicename": (
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: bad}\nspec:\n"
        "  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n"
        "    spec:\n      containers: [{name: c, image: busybox}]\n",
        "spec.serviceName: Required value",
    ),
    "namespace": (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lost, namespace: nowhere}\nspec:\n"
        "  containers: [{name: c, image: busybox}]\n",
        'metadata.namespace: namespaces "nowhere" not found',
    ),
}


async def test_bad_input_names_its_field_and_writes_nothing(
    pilothouse: Cli, memory_control_plane: Any, tmp_path: Path
) -> None:
    for label, (text, message) in BAD.items():
        manifest = tmp_path / f"{label}.yaml"
        manifest.write_text(text)
        code, out, err = await pilothouse("apply", "-f", str(manifest))
        assert code == 1 and out == "", f"{label}: {out}{err}"
        assert message in err, f"{label}: the user should see {message!r}, saw {err!r}"
    objects = memory_control_plane.objects
    for kind in (Kind.JOB, Kind.CRONJOB, Kind.STATEFULSET, Kind.POD):
        listing = await objects.list(kind)
        assert listing.items == [], f"{kind.info.plural} were written: {listing.items}"


async def test_create_job_from_cronjob_and_wait_for_it(
    pilothouse: Cli, memory_control_plane: Any, tmp_path: Path
) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(GOOD)
    assert (await pilothouse("apply", "-f", str(manifest)))[0] == 0
    code, out, err = await pilothouse("create", "job", "now", "--from=cronjob/tick", "-n", "batch")
    assert (code, out) == (0, "job.batch/now created\n"), err
    objects = memory_control_plane.objects
    job = await objects.get(Kind.JOB, "batch", "now")
    assert job.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
    assert [(r.kind, r.name) for r in job.metadata.owner_references] == [("CronJob", "tick")]
    assert job.spec.template.spec.containers[0].command == ["date"]
    code, _, err = await pilothouse("create", "job", "now", "--from=cronjob/tick", "-n", "batch")
    assert (code, err) == (1, 'error: jobs.batch "now" already exists\n')

    code, _, err = await pilothouse(
        "wait", "--for=condition=complete", "job/now", "-n", "batch", "--timeout=0.3s"
    )
    assert (code, err) == (1, "error: timed out waiting for the condition on jobs/now\n")
    task, out = pilothouse.start(
        "wait", "--for=condition=complete", "job/now", "-n", "batch", "--timeout=20s"
    )
    await asyncio.sleep(0.2)  # let the watch start; the condition below is what it waits for
    job = await objects.get(Kind.JOB, "batch", "now")
    job.status.conditions.add(type="Complete", status="True")
    await objects.update_status(job)
    assert await task == 0
    assert out.getvalue() == "job.batch/now condition met\n"


async def test_create_namespace_and_delete_with_cascade(
    pilothouse: Cli, memory_control_plane: Any, tmp_path: Path
) -> None:
    assert await pilothouse("create", "namespace", "team-b") == (
        0,
        "namespace/team-b created\n",
        "",
    )
    manifest = tmp_path / "all.yaml"
    manifest.write_text(GOOD)
    assert (await pilothouse("apply", "-f", str(manifest)))[0] == 0
    code, out, err = await pilothouse("delete", "job", "pi", "-n", "batch", "--cascade=orphan")
    assert (code, out) == (0, 'job.batch "pi" deleted\n'), err
    job = await memory_control_plane.objects.get(Kind.JOB, "batch", "pi")
    assert list(job.metadata.finalizers) == ["orphan"], "orphan: Terminating until released"
    code, _, err = await pilothouse("delete", "ns", "default")
    assert code == 1 and "may not be deleted" in err
    code, out, _ = await pilothouse("delete", "ns", "batch")
    assert code == 0
    code, out, _ = await pilothouse("get", "ns", "batch")
    assert out.splitlines()[1].split()[:2] == ["batch", "Terminating"]


async def test_describe_every_new_kind(pilothouse: Cli, tmp_path: Path) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(GOOD)
    assert (await pilothouse("apply", "-f", str(manifest)))[0] == 0
    wanted = {
        "job/pi": "Pods Statuses:",
        "cronjob/tick": "Schedule:",
        "daemonset/agent": "Desired Number of Nodes Scheduled:",
        "statefulset/web": "Volume Claims:",
        "pvc/scratch": "StorageClass:",
        "sa/builder": "Mountable secrets:",
    }
    for target, field in wanted.items():
        code, out, err = await pilothouse("describe", target, "-n", "batch")
        assert code == 0 and field in out, f"{target}: {out}{err}"
    code, out, _ = await pilothouse("describe", "sc", "local-path")
    assert "IsDefaultClass:" in out and "Yes" in out
    code, out, _ = await pilothouse("describe", "ns", "batch")
    assert "Status:" in out and "Active" in out
