"""Bad configuration in manifests is refused with its field path, every problem at once, and
nothing of the file is loaded (issue 14's bad inputs); good configuration loads and defaults
as Kubernetes does."""

from __future__ import annotations

import base64
import io

import pytest

from pilothouse import manifests
from pilothouse.manifests.validation.policy import ClusterPolicy
from pilothouse.v1 import objects_pb2

POD = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    securityContext:
      capabilities: {add: [NET_ADMIN, CAP_SYS_TIME, FLY]}
    volumeMounts:
    - {name: missing, mountPath: /a}
    - {name: data, mountPath: relative/path}
    - {name: data, mountPath: /b, subPath: ../escape}
  volumes:
  - {name: data, emptyDir: {}}
  - {name: data, configMap: {name: cfg}}
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.load(["-"], stdin=io.StringIO(text))
    return [(p.field, p.message) for p in caught.value.problems]


def test_bad_pod_configuration_names_every_field() -> None:
    found = problems(POD)
    assert found == [
        ("spec.volumes[1].name", 'Duplicate value: "data"'),
        ("spec.containers[0].volumeMounts[0].name", 'Not found: "missing"'),
        (
            "spec.containers[0].volumeMounts[1].mountPath",
            'Invalid value: "relative/path": must be an absolute path',
        ),
        (
            "spec.containers[0].volumeMounts[2].subPath",
            "Invalid value: \"../escape\": must not contain '..'",
        ),
        (
            "spec.containers[0].securityContext.capabilities.add[2]",
            'Invalid value: "FLY": not a Linux capability (e.g. "NET_ADMIN", "SYS_TIME", or "ALL" '
            "for every one)",
        ),
    ]


def test_a_secret_over_one_mebibyte_is_refused_without_showing_it() -> None:
    big = base64.b64encode(b"s" * (1024 * 1024 + 1)).decode()
    found = problems(
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: big}}\ndata: {{blob: {big}}}\n"
    )
    assert found == [
        ("data", "Too long: must have at most 1048576 bytes (these values hold 1048577)")
    ]


def test_configmap_and_secret_load_as_kubernetes_stores_them() -> None:
    documents = manifests.load(
        ["-"],
        stdin=io.StringIO(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\nimmutable: true\n"
            "data: {color: blue}\nbinaryData: {logo: aGk=}\n---\n"
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
            "type: kubernetes.io/dockerconfigjson\n"
            "stringData: {.dockerconfigjson: '{\"auths\": {}}'}\n"
        ),
    )
    cm, secret = (d.message for d in documents)
    assert (
        isinstance(cm, objects_pb2.ConfigMap) and cm.binary_data["logo"] == b"hi" and cm.immutable
    )
    assert isinstance(secret, objects_pb2.Secret)
    assert secret.data[".dockerconfigjson"] == b'{"auths": {}}' and not secret.string_data


def test_privileged_is_the_clusters_decision() -> None:
    [document] = manifests.load(
        ["-"],
        stdin=io.StringIO(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
            "  - {name: app, image: busybox, securityContext: {privileged: true}}\n"
        ),
    )
    refused = manifests.validate(document.message, policy=ClusterPolicy())
    assert [p.field for p in refused] == ["spec.containers[0].securityContext.privileged"]
    assert "--allow-privileged" in refused[0].message
    assert not manifests.validate(document.message, policy=ClusterPolicy(allow_privileged=True))
