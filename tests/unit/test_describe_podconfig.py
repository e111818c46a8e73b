"""`describe` of a pod's configuration and of ConfigMaps and Secrets, as kubectl shows them."""

from __future__ import annotations

from pilothouse import manifests
from pilothouse.cli.describe import podconfig, workloads
from pilothouse.cli.sheet import Sheet
from pilothouse.v1 import objects_pb2

POD = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  serviceAccountName: builder
  initContainers:
  - {name: setup, image: busybox}
  containers:
  - name: app
    image: busybox
    env:
    - name: COLOR
      valueFrom: {configMapKeyRef: {name: cfg, key: color}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password, optional: true}}
    - name: POD
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    envFrom:
    - {prefix: CFG_, configMapRef: {name: cfg}}
    volumeMounts:
    - {name: conf, mountPath: /etc/app, readOnly: true}
    - {name: conf, mountPath: /etc/one, subPath: one}
  volumes:
  - {name: conf, configMap: {name: cfg}}
  - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
  tolerations:
  - {key: dedicated, operator: Equal, value: build, effect: NoSchedule}
"""


def test_describe_pod_shows_its_configuration() -> None:
    [document], problems = manifests.parse(POD)
    assert not problems
    sheet = Sheet()
    workloads.pod(sheet, document.message)
    out = sheet.render()
    for expected in (
        "Service Account:  builder  (no token mounted",
        "Init Containers:",
        "COLOR: <set to the key 'color' of config map 'cfg'>  Optional: false",
        "PASSWORD: <set to the key 'password' in secret 'creds'>  Optional: true",
        "POD:  (v1:metadata.name)",
        "cfg  ConfigMap with prefix 'CFG_'  Optional: false",
        "/etc/app from conf (ro)",
        '/etc/one from conf (rw,path="one")',
        "Type:      ConfigMap (a volume populated by a ConfigMap)",
        "Type:          EmptyDir (a temporary directory that shares a pod's lifetime)",
        "SizeLimit:     64Mi",
        "Tolerations:     dedicated=build:NoSchedule",
    ):
        assert expected in out, f"describe pod lacks {expected!r}:\n{out}"


def test_describe_secret_shows_sizes_never_values() -> None:
    secret = objects_pb2.Secret(type="Opaque", data={"password": b"hunter2"})
    sheet = Sheet()
    podconfig.secret(sheet, secret)
    out = sheet.render()
    assert "password:  7 bytes" in out and "hunter2" not in out, out
