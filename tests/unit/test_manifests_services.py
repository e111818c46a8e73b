"""Service and EndpointSlice manifests, and the pod fields Services bring (dnsPolicy, dnsConfig,
hostAliases, hostname, preStop): Kubernetes' defaults, and every mistake named by its field path
with Kubernetes' words.
"""

from __future__ import annotations

import textwrap

import pytest

from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2


def load(text: str) -> list[manifests.Document]:
    documents, problems = manifests.parse(textwrap.dedent(text), source="m.yaml")
    assert problems == [], [str(p) for p in problems]
    return documents


def problems(text: str) -> list[str]:
    _, found = manifests.parse(textwrap.dedent(text), source="m.yaml")
    return [f"{p.field}: {p.message}" for p in found]


def service(spec: str) -> str:
    return "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n" + textwrap.indent(
        textwrap.dedent(spec), "  "
    )


def test_a_service_gets_kubernetes_defaults() -> None:
    (doc,) = load(service("selector: {app: web}\nports: [{port: 80}]\n"))
    assert doc.kind is Kind.SERVICE
    svc = doc.message
    assert isinstance(svc, objects_pb2.Service)
    assert (svc.spec.type, svc.spec.session_affinity) == ("ClusterIP", "None")
    port = svc.spec.ports[0]
    assert (port.protocol, port.target_port.number_value) == ("TCP", 80)


def test_client_ip_affinity_gets_three_hours_and_target_port_names_stay() -> None:
    (doc,) = load(
        service(
            "type: NodePort\nsessionAffinity: ClientIP\n"
            "ports: [{port: 80, targetPort: http, nodePort: 30080}]\n"
        )
    )
    spec = doc.message.spec
    assert spec.session_affinity_config.client_ip.timeout_seconds == 10800
    assert spec.ports[0].target_port.string_value == "http"


def test_headless_service_needs_no_ports() -> None:
    (doc,) = load(service("clusterIP: None\nselector: {app: db}\n"))
    assert list(doc.message.spec.cluster_ips) == ["None"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "ports: [{port: 0}]",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        (
            "ports: [{name: a, port: 80}, {name: a, port: 81}]",
            'spec.ports[1].name: Duplicate value: "a"',
        ),
        ("ports: [{port: 80}, {port: 81}]", "spec.ports[0].name: Required value"),
        (
            "ports: [{port: 80, protocol: HTTP}]",
            'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", '
            '"TCP", "UDP"',
        ),
        (
            "ports: [{port: 80, nodePort: 30080}]",
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ),
        (
            "type: NodePort\nports: [{port: 80, nodePort: 70000}]",
            "spec.ports[0].nodePort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            "type: NodePort\nclusterIP: None\nports: [{port: 80}]",
            "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort "
            "services",
        ),
        (
            "clusterIP: 10.96.0.300\nports: [{port: 80}]",
            'spec.clusterIP: Invalid value: "10.96.0.300": must be a valid IPv4 address, '
            "(e.g. 10.9.8.7), or None for a headless Service",
        ),
        (
            "type: ExternalName\nports: [{port: 80}]",
            'spec.type: Unsupported value: "ExternalName": supported values: "ClusterIP", '
            '"LoadBalancer", "NodePort"',
        ),
        ("selector: {app: web}", "spec.ports: Required value"),
        (
            "ports: [{port: 80, targetPort: my_port}]",
            'spec.ports[0].targetPort: Invalid value: "my_port": must contain only '
            "alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ),
        (
            "sessionAffinityConfig: {clientIP: {timeoutSeconds: 5}}\nports: [{port: 80}]",
            'spec.sessionAffinityConfig: Invalid value: "clientIP": must not be set when session '
            "affinity is None",
        ),
        (
            "sessionAffinity: ClientIP\nsessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n"
            "ports: [{port: 80}]",
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be "
            "greater than 0 and less than 86400",
        ),
        (
            "ports: [{port: 80}]\nexternalTrafficPolicy: Local",
            "spec.externalTrafficPolicy: unknown field (a Kubernetes field that Pilothouse "
            "does not support)",
        ),
    ],
)
def test_bad_services_are_refused_with_the_field_path(spec: str, expected: str) -> None:
    found = problems(service(spec))
    assert expected in found, f"expected {expected!r}, the user saw {found}"


def test_a_selectorless_service_is_valid() -> None:
    (doc,) = load(service("ports: [{port: 80}]"))
    assert dict(doc.message.spec.selector) == {}


def test_endpoint_slices_are_checked_by_address_type() -> None:
    found = problems(
        """
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: ext-1, labels: {kubernetes.io/service-name: ext}}
        addressType: IPv4
        ports: [{name: http, port: 80}, {name: http, port: 81}]
        endpoints:
        - addresses: ["10.1.2.300"]
        - addresses: []
        """
    )
    assert found == [
        'endpoints[0].addresses[0]: Invalid value: "10.1.2.300": must be a valid IPv4 address',
        "endpoints[1].addresses: Required value: must contain at least 1 address",
        'ports[1].name: Duplicate value: "http"',
    ]


POD = """
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: main
    image: busybox:stable
"""


def test_pod_dns_fields_are_checked() -> None:
    found = problems(
        POD
        + textwrap.indent(
            textwrap.dedent(
                """
                dnsPolicy: None
                hostname: Not_A_Label
                hostAliases:
                - ip: 10.0.0.300
                  hostnames: [db.local]
                dnsConfig:
                  searches: [a.example]
                  options: [{value: "2"}]
                """
            ),
            "  ",
        )
    )
    assert (
        "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver "
        "when `dnsPolicy` is None"
    ) in found
    assert (
        'spec.hostAliases[0].ip: Invalid value: "10.0.0.300": must be a valid IP address' in found
    )
    assert "spec.dnsConfig.options[0].name: Required value" in found
    assert any(f.startswith('spec.hostname: Invalid value: "Not_A_Label"') for f in found), found


def test_pre_stop_needs_exactly_one_action() -> None:
    found = problems(
        POD + "    lifecycle:\n      preStop:\n        exec: {command: [sh]}\n"
        "        sleep: {seconds: 3}\n"
    )
    assert found == [
        "spec.containers[0].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 "
        "handler type"
    ]
    (doc,) = load(POD + "    lifecycle:\n      preStop:\n        httpGet: {port: 8080}\n")
    hook = doc.message.spec.containers[0].lifecycle.pre_stop
    assert (hook.http_get.path, hook.http_get.scheme) == ("/", "HTTP")


def test_post_start_is_checked_like_pre_stop() -> None:
    found = problems(POD + "    lifecycle:\n      postStart:\n        exec: {command: []}\n")
    assert found == ["spec.containers[0].lifecycle.postStart.exec.command: Required value"]
    (doc,) = load(POD + "    lifecycle:\n      postStart:\n        httpGet: {port: 8080}\n")
    assert doc.message.spec.containers[0].lifecycle.post_start.http_get.path == "/"
