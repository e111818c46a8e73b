"""The CLI verbs against the real API servicers over an in-memory store (fast, in process).

Each test runs `pilothouse …` through `main()` in a worker thread (the CLI runs its own event
loop) and checks what a person would read on stdout and stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import yaml

from pilothouse.client import FIELD_ERRORS_METADATA, ErrorCode, field_problems, translate
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.unit.cli_support import Cli

REPO = Path(__file__).resolve().parents[2]
# deploy/examples/web.yaml's Deployment alone (the example also holds its Service).
WEB = REPO / "tests" / "data" / "manifests" / "web-deployment.yaml"

NODE_YAML = """\
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {kubernetes.io/hostname: n1}
"""


async def test_apply_reports_created_unchanged_configured(pilothouse: Cli) -> None:
    assert await pilothouse("apply", "-f", str(WEB)) == (0, "deployment.apps/web created\n", "")
    assert await pilothouse("apply", "-f", str(WEB)) == (0, "deployment.apps/web unchanged\n", "")
    changed = WEB.read_text().replace("replicas: 3", "replicas: 4")
    code, out, err = await pilothouse("apply", "-f", "-", stdin=changed)
    assert (code, out, err) == (0, "deployment.apps/web configured\n", "")
    code, out, _ = await pilothouse("apply", "-f", str(WEB), "--dry-run")
    assert out == "deployment.apps/web configured (server dry run)\n"
    code, out, _ = await pilothouse("get", "deploy", "web", "-o", "json")
    assert json.loads(out)["spec"]["replicas"] == 4, "a dry run must not write"


async def test_get_prints_tables_and_kubernetes_shapes(pilothouse: Cli) -> None:
    await pilothouse("apply", "-f", str(WEB))
    code, out, err = await pilothouse("get", "deployments")
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:4] == ["web", "0/3", "0", "0"]
    code, out, _ = await pilothouse("get", "deploy/web", "-o", "json")
    shown = json.loads(out)
    assert (shown["apiVersion"], shown["kind"]) == ("apps/v1", "Deployment")
    assert shown["metadata"]["name"] == "web" and shown["metadata"]["uid"]
    assert shown["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:stable"
    code, out, _ = await pilothouse("get", "deploy", "-o", "yaml")
    listed = yaml.safe_load(out)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    assert await pilothouse("get", "deploy", "-o", "name") == (0, "deployment.apps/web\n", "")
    code, out, _ = await pilothouse("get", "deploy", "-A", "-l", "app=web")
    assert out.split()[:2] == ["NAMESPACE", "NAME"] and "default" in out
    code, out, err = await pilothouse("get", "deploy", "-l", "app=other")
    assert (code, out, err) == (0, "", "No resources found in default namespace.\n")
    for fmt, load in (("json", json.loads), ("yaml", yaml.safe_load)):  # as kubectl: an empty List
        code, out, err = await pilothouse("get", "pods", "-l", "app=other", "-o", fmt)
        assert (code, err) == (0, ""), err
        assert (load(out)["kind"], load(out)["items"]) == ("List", []), out


async def test_get_of_a_missing_object_fails_with_its_name(pilothouse: Cli) -> None:
    code, out, err = await pilothouse("get", "deploy", "nope")
    assert (code, out) == (1, "")
    assert err == 'error: deployments "nope" not found\n'


async def test_apply_in_a_namespace_and_delete_it_again(pilothouse: Cli, tmp_path: Path) -> None:
    code, out, err = await pilothouse("apply", "-f", str(WEB), "-n", "team-a")
    assert code == 1 and err.endswith(
        'document 1: metadata.namespace: namespaces "team-a" not found\n'
    ), f"no namespace yet: {err}"
    namespace = tmp_path / "ns.yaml"
    namespace.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n")
    assert await pilothouse("apply", "-f", str(namespace)) == (0, "namespace/team-a created\n", "")
    code, out, _ = await pilothouse("apply", "-f", str(WEB), "-n", "team-a")
    assert (code, out) == (0, "deployment.apps/web created\n")
    code, out, err = await pilothouse("get", "deploy", "-n", "team-a", "-o", "name")
    assert out == "deployment.apps/web\n"
    code, _, err = await pilothouse("get", "deploy", "web")
    assert code == 1, "the object landed in the default namespace, not team-a"
    code, out, err = await pilothouse("delete", "-f", str(WEB), "-n", "team-a")
    assert (code, out, err) == (0, 'deployment.apps "web" deleted\n', "")
    code, out, err = await pilothouse("delete", "deploy", "web", "-n", "team-a")
    assert (code, err) == (1, 'error: deployments "web" not found\n')
    code, _, err = await pilothouse("delete", "deploy/web", "-n", "team-a", "--ignore-not-found")
    assert (code, err) == (0, "")


async def test_one_invalid_document_writes_nothing(pilothouse: Cli, tmp_path: Path) -> None:
    good = WEB.read_text()
    bad = good.replace("name: web\n", "name: api\n", 1).replace("cpu: 50m", "cpu: 12Zi")
    manifest = tmp_path / "both.yaml"
    manifest.write_text(good + "---\n" + bad)
    code, out, err = await pilothouse("apply", "-f", str(manifest))
    assert code == 1 and out == ""
    assert "document 2: spec.template.spec.containers[0].resources.requests[cpu]" in err, err
    code, _, err = await pilothouse("get", "deploy", "web")
    assert code == 1 and "not found" in err, "the valid document was written anyway"


async def test_scale_both_forms(pilothouse: Cli) -> None:
    await pilothouse("apply", "-f", str(WEB))
    assert await pilothouse("scale", "deployment/web", "--replicas", "5") == (
        0,
        "deployment.apps/web scaled\n",
        "",
    )
    await pilothouse("scale", "deploy", "web", "--replicas=0")
    code, out, _ = await pilothouse("get", "deploy", "web", "-o", "json")
    assert json.loads(out)["spec"]["replicas"] == 0
    code, _, err = await pilothouse("scale", "deploy/missing", "--replicas", "1")
    assert code == 1 and err == 'error: deployments "missing" not found\n'


async def test_describe_deployment_shows_its_sections_and_only_its_events(
    pilothouse: Cli, memory_control_plane: object
) -> None:
    await pilothouse("apply", "-f", str(WEB))
    objects = memory_control_plane.objects  # type: ignore[attr-defined]
    for name, kind, target, reason in (
        ("web.1", "Deployment", "web", "ScalingReplicaSet"),
        ("other.1", "Deployment", "other", "SomethingElse"),
    ):
        event = o.Event(reason=reason, message=f"about {target}", type="Normal", count=1)
        event.metadata.name = name
        event.metadata.namespace = "default"
        event.involved_object.kind = kind
        event.involved_object.name = target
        event.source.component = "deployment-controller"
        await objects.create(event)
    out = await pilothouse.describe(
        "deploy",
        "web",
        "Name:                   web",
        "Namespace:              default",
        "Selector:               app=web",
        "Replicas:               3 desired | 0 updated | 0 total | 0 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "Pod Template:",
        "    Image:      busybox:stable",
        "      memory:  64Mi",
        "    Readiness:     http-get http://:8080/index.html delay=0s timeout=1s period=2s",
        "Events:",
    )
    assert "ScalingReplicaSet" in out and "about web" in out
    assert "SomethingElse" not in out, "describe showed another object's event"


async def test_cordon_uncordon_and_the_node_table(pilothouse: Cli) -> None:
    assert (await pilothouse("apply", "-f", "-", stdin=NODE_YAML))[0] == 0
    assert await pilothouse("cordon", "n1") == (0, "node/n1 cordoned\n", "")
    assert await pilothouse("cordon", "node/n1") == (0, "node/n1 already cordoned\n", "")
    _, out, _ = await pilothouse("get", "nodes")
    assert out.splitlines()[1].split()[:2] == ["n1", "Unknown,SchedulingDisabled"], out
    assert await pilothouse("uncordon", "n1") == (0, "node/n1 uncordoned\n", "")
    _, out, _ = await pilothouse("get", "node", "n1", "-o", "json")
    assert not json.loads(out).get("spec", {}).get("unschedulable"), "uncordon did not stick"


async def test_drain_deletes_managed_pods_and_refuses_unmanaged_ones(
    pilothouse: Cli, memory_control_plane: object
) -> None:
    await pilothouse("apply", "-f", "-", stdin=NODE_YAML)
    objects = memory_control_plane.objects  # type: ignore[attr-defined]
    for name, owner in (("web-a", "web-1"), ("loner", "")):
        containers = [factories.container(name="c", image="busybox")]
        await objects.create(
            factories.pod(name=name, node="n1", owner=owner, containers=containers)
        )
    code, _, err = await pilothouse("drain", "n1")
    assert code == 2 and "default/loner" in err and "--force" in err, err
    code, out, err = await pilothouse("drain", "n1", "--force")
    assert code == 0, err
    assert "node/n1 drained" in out and "pod/web-a evicted" in out
    code, out, err = await pilothouse("get", "pods")
    assert out == "", "drain left pods on the node"


async def test_logs_before_the_server_supports_them_is_one_clear_line(pilothouse: Cli) -> None:
    code, out, err = await pilothouse("logs", "web-abc", "--tail", "5")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err


def test_field_errors_from_the_server_read_one_per_line() -> None:
    errors = api.FieldErrors()
    errors.errors.add(field="spec.replicas", message="must be greater than or equal to 0")
    errors.errors.add(field="metadata.name", message="a lowercase RFC 1123 label must …")
    metadata = ((FIELD_ERRORS_METADATA, errors.SerializeToString()),)
    problems = field_problems(metadata)
    assert [str(p) for p in problems] == [
        "spec.replicas: must be greater than or equal to 0",
        "metadata.name: a lowercase RFC 1123 label must …",
    ]

    class Failed(grpc.aio.AioRpcError):
        def __init__(self) -> None:
            super().__init__(
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(*metadata),
                details="spec.replicas: …",
            )

    error = translate(Failed(), kind=Kind.DEPLOYMENT, name="web", address="x:1")
    assert error.code is ErrorCode.INVALID
    assert error.message.splitlines() == [str(p) for p in problems]


async def test_describe_pod_and_node_show_state_and_allocation(
    pilothouse: Cli, memory_control_plane: object
) -> None:
    await pilothouse("apply", "-f", "-", stdin=NODE_YAML)
    objects = memory_control_plane.objects  # type: ignore[attr-defined]
    node = await objects.get(Kind.NODE, "", "n1")
    node.status.allocatable.update({"cpu": "2", "memory": "1Gi", "pods": "110"})
    node.status.conditions.add(type="Ready", status="True", reason="AgentReady")
    await objects.update_status(node)
    httpd = factories.container(name="httpd", cpu="500m", memory="256Mi")
    pod = await objects.create(factories.pod(name="web-a", node="n1", containers=[httpd]))
    pod.status.phase = "Running"
    status = pod.status.container_statuses.add(name="httpd", restart_count=4)
    status.state.waiting.reason = "CrashLoopBackOff"
    status.last_state.terminated.exit_code = 1
    status.last_state.terminated.reason = "Error"
    await objects.update_status(pod)

    out = await pilothouse.describe(
        "pod",
        "web-a",
        "Status:           Running",
        "Node:             n1",
        "Service Account:  default  (no token mounted",
        "    State:          Waiting",
        "      Reason:       CrashLoopBackOff",
        "    Last State:     Terminated",
        "      Exit Code:    1",
        "    Restart Count:  4",
    )
    code, out, _ = await pilothouse("get", "pods")
    assert out.splitlines()[1].split()[:4] == ["web-a", "0/1", "CrashLoopBackOff", "4"], out

    code, out, err = await pilothouse("describe", "node", "n1")
    assert code == 0, err
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "Non-terminated Pods: (1 in total)" in lines, out
    assert "cpu 500m (25%) 0 (0%)" in lines and "memory 256Mi (25%) 0 (0%)" in lines, out
    code, out, _ = await pilothouse("get", "nodes")
    assert out.splitlines()[1].split()[:2] == ["n1", "Ready"]
    assert "500m/2 (25%)" in out and "256Mi/1Gi (25%)" in out, out
