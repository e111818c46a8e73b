"""`-o json|yaml` shows objects in the Kubernetes shape, and that shape reads back unchanged."""

from __future__ import annotations

import json

import pytest
from google.protobuf.struct_pb2 import Value

from pilothouse import kinds, manifests
from pilothouse.cli import shape
from pilothouse.v1 import objects_pb2
from tests import factories


def _deployment() -> objects_pb2.Deployment:
    container = factories.container(name="web")
    container.liveness_probe.tcp_socket.port.CopyFrom(Value(number_value=8080))
    container.readiness_probe.http_get.port.CopyFrom(Value(string_value="http"))
    deployment = factories.deployment(
        namespace="", labels={}, containers=[container], surge=1, unavailable=0
    )
    deployment.metadata.generation = 7
    deployment.metadata.resource_version = "1234"
    deployment.metadata.creation_timestamp.FromJsonString("2024-05-01T10:00:00Z")
    manifests.set_defaults(deployment)
    return deployment


def test_top_level_order_and_identity() -> None:
    out = shape.to_k8s(_deployment())
    assert list(out) == ["apiVersion", "kind", "metadata", "spec"]
    assert (out["apiVersion"], out["kind"]) == ("apps/v1", "Deployment")


def test_apiversion_and_kind_come_from_the_kind_even_when_unset() -> None:
    pod = objects_pb2.Pod()
    pod.metadata.name = "p"
    assert shape.to_k8s(pod) == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}


def test_numbers_print_as_kubernetes_prints_them() -> None:
    out = shape.to_k8s(_deployment())
    assert out["metadata"]["generation"] == 7, "int64 fields are numbers, not strings"
    assert out["metadata"]["resourceVersion"] == "1234"
    assert out["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"
    pod_spec = out["spec"]["template"]["spec"]
    assert pod_spec["terminationGracePeriodSeconds"] == 30
    assert pod_spec["containers"][0]["livenessProbe"]["tcpSocket"]["port"] == 8080
    assert pod_spec["containers"][0]["readinessProbe"]["httpGet"]["port"] == "http"
    rolling = out["spec"]["strategy"]["rollingUpdate"]
    assert rolling == {"maxUnavailable": 0, "maxSurge": 1}
    text = json.dumps(out)
    assert "8080.0" not in text and '"7"' not in text


def test_zero_replicas_is_shown_because_it_was_set() -> None:
    deployment = _deployment()
    deployment.spec.replicas = 0
    assert shape.to_k8s(deployment)["spec"]["replicas"] == 0


def test_empty_status_is_omitted_and_a_real_one_shown() -> None:
    deployment = _deployment()
    deployment.status.SetInParent()
    assert "status" not in shape.to_k8s(deployment)
    deployment.status.ready_replicas = 2
    deployment.status.observed_generation = 7
    condition = deployment.status.conditions.add(type="Available", status="True")
    condition.last_update_time.FromJsonString("2024-05-01T10:00:05Z")
    assert shape.to_k8s(deployment)["status"] == {
        "observedGeneration": 7,
        "readyReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "lastUpdateTime": "2024-05-01T10:00:05Z"}
        ],
    }


@pytest.mark.parametrize("kind", [kinds.Kind.DEPLOYMENT, kinds.Kind.POD, kinds.Kind.NODE])
def test_round_trip(kind: kinds.Kind) -> None:
    if kind is kinds.Kind.DEPLOYMENT:
        message = _deployment()
    elif kind is kinds.Kind.POD:
        message = objects_pb2.Pod()
        message.metadata.name = "p"
        message.spec.node_name = "n1"
        message.status.phase = "Running"
        message.status.container_statuses.add(name="main", restart_count=2, ready=True)
        manifests.set_defaults(message)
    else:
        message = objects_pb2.Node()
        message.metadata.name = "n1"
        message.status.capacity["cpu"] = "4"
        message.status.node_info.kernel_version = "6.1.0"
        manifests.set_defaults(message)
    assert shape.from_k8s(shape.to_k8s(message), kind) == message
    assert (
        shape.from_k8s(json.loads(json.dumps(shape.to_k8s(message))), kind.info.plural) == message
    )


def test_from_k8s_names_every_bad_field() -> None:
    data = shape.to_k8s(_deployment())
    data["spec"]["replicass"] = 3
    data["metadata"]["labels"] = ["app"]
    with pytest.raises(manifests.ManifestError) as caught:
        shape.from_k8s(data, kinds.Kind.DEPLOYMENT)
    assert [str(p) for p in caught.value.problems] == [
        "metadata.labels: must be a mapping, got a list",
        "spec.replicass: unknown field",
    ]
