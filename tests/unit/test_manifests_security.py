"""Security-relevant pod settings at apply (issue 11): probe requests, probe hosts, seccomp.

What a user sees: a manifest whose httpGet probe could smuggle a second request (CR/LF in a
header, a path that is not a path) is refused by `pilothouse apply` with the field path, before
anything is written; a probe `host` and `seccompProfile: Unconfined` pass the syntax but the
control plane refuses them unless its administrator allowed them (`ClusterPolicy`).
"""

from __future__ import annotations

import pytest

from pilothouse import manifests
from pilothouse.manifests import ClusterPolicy

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: app
    image: busybox
    readinessProbe:
      httpGet:
        port: 8080
        path: {path}
        host: {host}
        httpHeaders:
        - name: {header_name}
          value: {header_value}
"""


def _pod(
    *,
    path: str = "/healthz",
    host: str = '""',
    header_name: str = "X-Probe",
    header_value: str = "ok",
) -> str:
    return POD.format(path=path, host=host, header_name=header_name, header_value=header_value)


def _problems(text: str) -> list[str]:
    _, problems = manifests.parse(text, source="pod.yaml")
    return [f"{p.field}: {p.message}" for p in problems]


def test_a_header_value_with_cr_lf_is_refused_with_its_field_path() -> None:
    smuggling = '"ok\\r\\nGET /v3/kv/put HTTP/1.1"'
    assert _problems(_pod(header_value=smuggling)) == [
        "spec.containers[0].readinessProbe.httpGet.httpHeaders[0].value: Invalid value: "
        '"ok\\r\\nGET /v3/kv/put HTTP/1.1": must not contain control characters (CR, LF, NUL …):'
        " a header value is one line of text"
    ]
    assert _problems(_pod(header_value='"a\\u0000b"')), "a NUL in a header value was accepted"
    assert not _problems(_pod(header_value='"a\\tb c"')), "tab and space are valid in values"


def test_header_names_are_http_tokens_as_kubernetes_checks_them() -> None:
    for bad in ('"X Bad"', '"X-A:b"', '"X\\r\\nY"'):
        found = _problems(_pod(header_name=bad))
        assert len(found) == 1 and found[0].startswith(
            "spec.containers[0].readinessProbe.httpGet.httpHeaders[0].name: Invalid value: "
        ), found
        assert "a valid HTTP header must consist of alphanumeric characters or '-'" in found[0]


def test_the_path_must_start_with_a_slash_and_hold_no_spaces_or_controls() -> None:
    assert _problems(_pod(path="healthz")) == [
        'spec.containers[0].readinessProbe.httpGet.path: Invalid value: "healthz": '
        "must start with '/'"
    ]
    found = _problems(_pod(path='"/a HTTP/1.1\\r\\nX: y"'))
    assert found == [
        "spec.containers[0].readinessProbe.httpGet.path: Invalid value: "
        '"/a HTTP/1.1\\r\\nX: y": must not contain spaces or control characters'
    ]
    assert not _problems(_pod(path='"/healthz?verbose=1"'))


def test_a_pre_stop_hook_is_checked_like_a_probe() -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    lifecycle:
      preStop:
        httpGet:
          port: 8080
          httpHeaders: [{name: X-Hook, value: "a\\r\\nb"}]
"""
    found = _problems(text)
    assert len(found) == 1 and found[0].startswith(
        "spec.containers[0].lifecycle.preStop.httpGet.httpHeaders[0].value: Invalid value: "
    ), found


def test_a_host_must_be_an_address_or_a_dns_name() -> None:
    found = _problems(_pod(host='"127.0.0.1\\r\\n"'))
    assert found == [
        "spec.containers[0].readinessProbe.httpGet.host: Invalid value: "
        '"127.0.0.1\\r\\n": must be a valid IP address or a DNS-1123 subdomain'
    ]
    assert not _problems(_pod(host="127.0.0.1")), "the syntax is fine; policy decides"


def _validate(text: str, policy: ClusterPolicy) -> list[str]:
    (document,), problems = manifests.parse(text, source="x.yaml")
    assert not problems
    return [f"{p.field}: {p.message}" for p in manifests.validate(document.message, policy=policy)]


def test_a_probe_host_is_refused_by_the_cluster_unless_its_admin_allows_it() -> None:
    found = _validate(_pod(host="127.0.0.1"), ClusterPolicy())
    assert found == [
        'spec.containers[0].readinessProbe.httpGet.host: Forbidden: "127.0.0.1" is outside '
        "the pod: probes and hooks may only reach their own pod on this cluster (leave host "
        "empty to use the pod's IP; an admin may allow it with the control plane's "
        "--allow-probe-host)"
    ]
    assert not _validate(_pod(host="127.0.0.1"), ClusterPolicy(allow_probe_host=True))
    assert not _validate(_pod(), ClusterPolicy()), "a probe without host reaches its own pod"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {seccompProfile: {type: Unconfined}}
      containers:
      - name: app
        image: busybox
        securityContext: {seccompProfile: {type: %s}}
        livenessProbe: {tcpSocket: {port: 80, host: metadata.internal}}
"""


def test_unconfined_seccomp_and_probe_hosts_in_a_template_are_refused_by_default() -> None:
    found = _validate(DEPLOYMENT % "Unconfined", ClusterPolicy())
    where = "spec.template.spec"
    assert [f.split(": Forbidden")[0] for f in found] == [
        f"{where}.securityContext.seccompProfile.type",
        f"{where}.containers[0].securityContext.seccompProfile.type",
        f"{where}.containers[0].livenessProbe.tcpSocket.host",
    ], found
    assert "Unconfined seccomp profiles are not allowed on this cluster" in found[0]
    allowed = ClusterPolicy(allow_probe_host=True, allow_unconfined_seccomp=True)
    assert not _validate(DEPLOYMENT % "Unconfined", allowed)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            "Localhost",
            "spec.template.spec.containers[0].securityContext.seccompProfile.type: Forbidden: "
            "Localhost seccomp profiles are not supported",
        ),
        (
            "Strict",
            "spec.template.spec.containers[0].securityContext.seccompProfile.type: Unsupported "
            'value: "Strict": supported values: "Localhost", "RuntimeDefault", "Unconfined"',
        ),
    ],
)
def test_seccomp_profile_types_are_checked(profile: str, expected: str) -> None:
    found = _problems(DEPLOYMENT % profile)
    assert len(found) == 1 and found[0].startswith(expected), found
    assert not _problems(DEPLOYMENT % "RuntimeDefault")


def test_host_users_false_is_refused_rather_than_run_with_the_nodes_users() -> None:
    text = (DEPLOYMENT % "RuntimeDefault").replace(
        "      securityContext: {seccompProfile: {type: Unconfined}}\n", "      hostUsers: false\n"
    )
    assert _problems(text) == [
        "spec.template.spec.hostUsers: Forbidden: user namespaces (hostUsers: false) are not "
        "supported by Pilothouse yet; remove it (or set it to true) to run the pod with the "
        "node's users"
    ]
    assert not _problems(text.replace("hostUsers: false", "hostUsers: true"))


def test_ephemeral_storage_is_a_resource_a_container_may_ask_for() -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    resources:
      requests: {ephemeral-storage: 5Mi}
      limits: {ephemeral-storage: 1Mi}
"""
    assert _problems(text) == [
        'spec.containers[0].resources.requests[ephemeral-storage]: Invalid value: "5Mi": '
        "must be less than or equal to ephemeral-storage limit of 1Mi"
    ]
    assert not _problems(text.replace("1Mi", "10Mi"))
