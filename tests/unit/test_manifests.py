"""Valid manifests load from files, directories and stdin, with Kubernetes' defaults applied."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse import kinds, manifests
from pilothouse.cli import shape
from pilothouse.v1 import objects_pb2

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "manifests"
WEB = ROOT / "deploy" / "examples" / "web.yaml"
# The example's first document, its Deployment (a Service follows it in the file).
WEB_DEPLOYMENT = WEB.read_text().split("\n---\n")[0] + "\n"

POD_SPEC_DEFAULTS = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
}
CONTAINER_DEFAULTS = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}
PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra`'s keys added where `base` lacks them (recursively)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _merge(out[key], value)
    return out


def _with_deployment_defaults(manifest: dict[str, Any]) -> dict[str, Any]:
    """What Kubernetes would show for `manifest` after creating it (spec only, no status)."""
    expected = _merge(
        manifest,
        {
            "metadata": {"namespace": "default"},
            "spec": {
                "replicas": 1,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
                "template": {"spec": POD_SPEC_DEFAULTS},
            },
        },
    )
    for container in expected["spec"]["template"]["spec"]["containers"]:
        tag = container["image"].rsplit(":", 1)[-1] if ":" in container["image"] else "latest"
        container.setdefault("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
        container.update(_merge(container, CONTAINER_DEFAULTS))
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in container:
                container[probe] = _merge(container[probe], PROBE_DEFAULTS)
                if "httpGet" in container[probe]:
                    container[probe]["httpGet"] = _merge(
                        container[probe]["httpGet"], {"path": "/", "scheme": "HTTP"}
                    )
    return expected


def _assert_same(got: Any, want: Any, path: str = "") -> None:
    """Field-by-field comparison whose failure names the first differing field."""
    if isinstance(want, dict) and isinstance(got, dict):
        assert set(got) == set(want), (
            f"{path or 'object'}: fields shown {sorted(got)} but the manifest plus defaults "
            f"has {sorted(want)}"
        )
        for key in want:
            _assert_same(got[key], want[key], f"{path}.{key}" if path else key)
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), f"{path}: {len(got)} items shown, {len(want)} expected"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: shown as {got!r}, the manifest plus defaults say {want!r}"


# ---------------------------------------------------------------------------------------------
# Round trips.


@pytest.mark.parametrize(
    "path",
    [
        WEB,
        DATA / "nginx-deployment.yaml",
        DATA / "nginx-deployment-recommended-labels.yaml",
    ],
    ids=lambda p: p.name,
)
def test_deployment_reads_back_as_the_manifest_plus_defaults(path: Path) -> None:
    manifest = next(yaml.safe_load_all(path.read_text()))
    document = manifests.load([str(path)])[0]
    assert document.kind is kinds.Kind.DEPLOYMENT
    assert (document.source, document.index) == (str(path), 1)
    _assert_same(shape.to_k8s(document.message), _with_deployment_defaults(manifest))


def test_nginx_example_from_the_kubernetes_docs_loads_unchanged() -> None:
    [document] = manifests.load([str(DATA / "nginx-deployment.yaml")])
    deployment = document.message
    assert deployment.metadata.name == "nginx-deployment"
    assert deployment.spec.replicas == 3
    assert dict(deployment.spec.selector.match_labels) == {"app": "nginx"}
    [container] = deployment.spec.template.spec.containers
    assert (container.image, container.ports[0].container_port) == ("nginx:1.14.2", 80)
    assert container.image_pull_policy == "IfNotPresent"


def test_web_example_is_what_the_readme_promises() -> None:
    document, service = manifests.load([str(WEB)])
    assert service.kind is kinds.Kind.SERVICE and service.message.spec.type == "NodePort"
    assert [
        (p.port, p.target_port.string_value, p.node_port) for p in service.message.spec.ports
    ] == [(80, "http", 30080)]
    deployment = document.message
    [container] = deployment.spec.template.spec.containers
    assert deployment.metadata.name == "web" and deployment.spec.replicas == 3
    assert container.image == "busybox:stable"
    assert "httpd -f -v -p 8080 -h /www" in " ".join(container.command)
    assert container.ports[0].container_port == 8080
    assert dict(container.resources.requests) == {"cpu": "50m", "memory": "16Mi"}
    assert dict(container.resources.limits) == {"cpu": "200m", "memory": "64Mi"}
    assert container.readiness_probe.http_get.port.number_value == 8080
    assert container.liveness_probe.tcp_socket.port.number_value == 8080


def test_shape_reads_its_own_output_back_unchanged() -> None:
    for document in manifests.load([str(WEB), str(DATA / "multi")]):
        again = shape.from_k8s(shape.to_k8s(document.message), document.kind)
        assert again == document.message, f"{document.source} changed on a round trip"


def test_output_of_get_o_yaml_can_be_applied_again() -> None:
    document = manifests.load([str(WEB)])[0]
    document.message.metadata.uid = "0b5c"
    document.message.metadata.generation = 4
    document.message.metadata.creation_timestamp.FromJsonString("2024-05-01T10:00:00Z")
    document.message.status.replicas = 3
    text = yaml.safe_dump(shape.to_k8s(document.message))
    documents, problems = manifests.parse(text, source="out.yaml")
    assert problems == []
    assert documents[0].message.metadata.creation_timestamp.seconds > 0
    assert not documents[0].message.HasField("status"), "status is the control plane's to write"


# ---------------------------------------------------------------------------------------------
# Sources.


def test_multi_document_file_gives_every_kind_with_its_document_number() -> None:
    path = DATA / "multi" / "all-kinds.yaml"
    documents = manifests.load([str(path)])
    assert [(d.kind, d.index) for d in documents] == [
        (kinds.Kind.DEPLOYMENT, 1),
        (kinds.Kind.POD, 3),
        (kinds.Kind.NODE, 4),
    ], "documents are numbered as a person counts them, empty ones included"
    deployment, pod, node = (d.message for d in documents)
    assert deployment.metadata.namespace == "shop"
    assert deployment.spec.HasField("replicas") and deployment.spec.replicas == 0
    assert deployment.spec.strategy.type == "Recreate"
    assert not deployment.spec.strategy.HasField("rolling_update")
    assert deployment.spec.template.spec.containers[0].image_pull_policy == "Always"
    assert pod.metadata.namespace == "default"
    assert pod.spec.restart_policy == "OnFailure"
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"  # a digest, no tag
    assert node.metadata.namespace == "", "nodes belong to no namespace"
    assert dict(node.status.capacity) == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    assert dict(node.status.allocatable) == dict(node.status.capacity)


def test_quantities_written_as_yaml_numbers_are_stored_in_kubernetes_form() -> None:
    documents = manifests.load([str(DATA / "multi" / "all-kinds.yaml")])
    deployment, pod = documents[0].message, documents[1].message
    resources = deployment.spec.template.spec.containers[0].resources
    assert dict(resources.limits) == {"cpu": "1", "memory": "128Mi"}
    assert dict(resources.requests) == {}, "Kubernetes does not copy limits into templates"
    resources = pod.spec.containers[0].resources
    assert dict(resources.limits) == {"cpu": "500m", "memory": "64Mi"}
    assert dict(resources.requests) == {"cpu": "500m", "memory": "1e3"}, (
        "a Pod's missing requests default to its limits, given ones stay"
    )


def test_directory_loads_its_manifest_files_sorted_and_not_nested_ones() -> None:
    documents = manifests.load([str(DATA / "multi")])
    assert [(Path(d.source).name, d.index) for d in documents] == [
        ("all-kinds.yaml", 1),
        ("all-kinds.yaml", 3),
        ("all-kinds.yaml", 4),
        ("second.json", 1),
    ]
    assert documents[-1].message.metadata.name == "from-json"


def test_stdin_is_read_for_a_dash() -> None:
    text = WEB_DEPLOYMENT + "---\n" + (DATA / "nginx-deployment.yaml").read_text()
    documents = manifests.load(["-"], stdin=io.StringIO(text))
    assert [(d.source, d.index, d.message.metadata.name) for d in documents] == [
        ("<stdin>", 1, "web"),
        ("<stdin>", 2, "nginx-deployment"),
    ]


def test_stdin_defaults_to_the_process_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(WEB_DEPLOYMENT))
    [document] = manifests.load(["-"])
    assert document.message.metadata.name == "web"


def test_one_bad_file_among_good_ones_loads_nothing_and_reports_all(tmp_path: Path) -> None:
    (tmp_path / "a-good.yaml").write_text(WEB_DEPLOYMENT)
    (tmp_path / "b-bad.yaml").write_text(WEB_DEPLOYMENT.replace("replicas: 3", "replicas: -3"))
    (tmp_path / "c-bad.json").write_text(json.dumps({"apiVersion": "v1", "kind": "LimitRange"}))
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.load([str(tmp_path), str(tmp_path / "missing.yaml")])
    shown = [str(p) for p in caught.value.problems]
    assert shown == [
        f"{tmp_path}/b-bad.yaml: document 1: spec.replicas: Invalid value: -3: must be greater "
        "than or equal to 0",
        f'{tmp_path}/c-bad.json: document 1: kind: no matches for kind "LimitRange" in version '
        f'"v1" (supported: {", ".join(f"{v} {k}" for v, k in manifests.SUPPORTED)})',
        f'{tmp_path}/missing.yaml: the path "{tmp_path}/missing.yaml" does not exist',
    ]


def test_directory_without_manifests_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(manifests.ManifestError, match=r"no \.yaml, \.yml or \.json files"):
        manifests.load([str(tmp_path)])


# ---------------------------------------------------------------------------------------------
# Defaults and validation of objects that come without a file.


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:stable", "IfNotPresent"),
        ("localhost:5000/busybox", "Always"),
        ("localhost:5000/busybox:1.36", "IfNotPresent"),
        ("busybox@sha256:" + "0" * 64, "IfNotPresent"),
        ("busybox:latest@sha256:" + "0" * 64, "Always"),
    ],
)
def test_image_pull_policy_defaults_like_kubernetes(image: str, policy: str) -> None:
    pod = objects_pb2.Pod()
    pod.spec.containers.add(name="main", image=image)
    manifests.set_defaults(pod)
    assert pod.spec.containers[0].image_pull_policy == policy


def test_set_defaults_is_idempotent_and_keeps_what_was_given() -> None:
    document = manifests.load([str(WEB)])[0]
    once = document.message
    twice = objects_pb2.Deployment()
    twice.CopyFrom(once)
    manifests.set_defaults(twice)
    assert twice == once
    assert once.spec.template.spec.containers[0].readiness_probe.period_seconds == 2


def test_rollback_on_failure_extension_is_read() -> None:
    text = WEB_DEPLOYMENT.replace("  replicas: 3\n", "  replicas: 3\n  rollbackOnFailure: true\n")
    [document], problems = manifests.parse(text, source="web.yaml")
    assert problems == []
    assert document.message.spec.rollback_on_failure is True
    assert shape.to_k8s(document.message)["spec"]["rollbackOnFailure"] is True


def test_validate_reports_api_objects_without_a_file() -> None:
    deployment = objects_pb2.Deployment()
    deployment.metadata.name = "web"
    deployment.spec.selector.match_labels["app"] = "web"
    deployment.spec.template.metadata.labels["app"] = "web"
    deployment.spec.template.spec.containers.add(name="web")
    manifests.set_defaults(deployment)
    problems = manifests.validate(deployment)
    assert problems == [
        manifests.Problem("", 0, "spec.template.spec.containers[0].image", "Required value")
    ]
    assert str(problems[0]) == "spec.template.spec.containers[0].image: Required value"


def test_validate_accepts_a_minimal_pod_and_node() -> None:
    pod = objects_pb2.Pod()
    pod.metadata.name = "p1"
    pod.spec.containers.add(name="main", image="busybox:stable")
    node = objects_pb2.Node()
    node.metadata.name = "n1.example"
    node.metadata.namespace = "ignored"
    for message in (pod, node):
        manifests.set_defaults(message)
        assert manifests.validate(message) == []
    assert node.metadata.namespace == "", "a Node belongs to no namespace"
    node.metadata.name = "N1"
    assert [p.field for p in manifests.validate(node)] == ["metadata.name"]


def test_replica_sets_made_by_the_controller_are_checked_like_deployments() -> None:
    document = manifests.load([str(WEB)])[0]
    replica_set = objects_pb2.ReplicaSet()
    replica_set.metadata.name = "web-5d8f9c7b6"
    replica_set.spec.replicas = 3
    replica_set.spec.selector.CopyFrom(document.message.spec.selector)
    replica_set.spec.template.CopyFrom(document.message.spec.template)
    manifests.set_defaults(replica_set)
    assert manifests.validate(replica_set) == []
    replica_set.spec.template.metadata.labels["app"] = "other"
    assert [p.field for p in manifests.validate(replica_set)] == ["spec.template.metadata.labels"]


def test_the_tests_web_deployment_is_the_examples() -> None:
    copy = DATA / "web-deployment.yaml"
    assert copy.read_text() == WEB_DEPLOYMENT, f"{copy} differs from {WEB}'s Deployment: copy it"


def test_every_shipped_example_loads() -> None:
    documents = manifests.load([str(ROOT / "deploy" / "examples")])
    assert {Path(d.source).name for d in documents} >= {"web.yaml", "web-safe-rollout.yaml"}


def test_yaml_error_names_the_document_it_is_in() -> None:
    text = WEB_DEPLOYMENT + "---\n" + WEB_DEPLOYMENT + "---\nkind: [unclosed\n"
    documents, problems = manifests.parse(text, source="three.yaml")
    assert len(documents) == 2, "parse returns the good documents; load refuses them all"
    assert [str(p).split(": invalid YAML")[0] for p in problems] == ["three.yaml: document 3"]
    line = int(problems[0].message.split("line ")[1].split(",")[0])
    assert line > 2 * len(WEB_DEPLOYMENT.splitlines()), f"{problems[0]} points before document 3"
