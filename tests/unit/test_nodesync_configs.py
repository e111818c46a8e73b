"""What a node's push carries of ConfigMaps and Secrets: those its own pods use, no others."""

from __future__ import annotations

import asyncio

from controlplane.cache.informer import Informer
from controlplane.nodes.configs import ConfigView, NodeConfig, references
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories


def pod_using(name: str) -> objects_pb2.Pod:
    [document], problems = manifests.parse(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: team}}
spec:
  imagePullSecrets: [{{name: registry}}]
  initContainers:
  - name: init
    image: busybox
    envFrom: [{{secretRef: {{name: init-env}}}}]
  containers:
  - name: app
    image: busybox
    env:
    - name: A
      valueFrom: {{configMapKeyRef: {{name: env-cm, key: a}}}}
    - name: B
      valueFrom: {{secretKeyRef: {{name: env-secret, key: b}}}}
  volumes:
  - {{name: v1, configMap: {{name: vol-cm}}}}
  - {{name: v2, secret: {{secretName: vol-secret}}}}
  - name: v3
    projected:
      sources:
      - configMap: {{name: proj-cm}}
      - secret: {{name: proj-secret}}
"""
    )
    assert not problems
    return document.message


def test_references_cover_volumes_env_init_containers_and_pull_secrets() -> None:
    maps, secrets = references(pod_using("web"))
    assert maps == {("team", "env-cm"), ("team", "vol-cm"), ("team", "proj-cm")}
    assert secrets == {
        ("team", n) for n in ("registry", "init-env", "env-secret", "vol-secret", "proj-secret")
    }


async def test_a_push_carries_only_what_the_nodes_pods_use() -> None:
    objects = ObjectStore(MemoryStore())
    for name in ("env-cm", "vol-cm", "unused-cm"):
        cm = objects_pb2.ConfigMap(metadata=objects_pb2.ObjectMeta(name=name, namespace="team"))
        await objects.create(cm)
    for name in ("env-secret", "unused-secret"):
        secret = objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name=name, namespace="team"))
        secret.data["k"] = b"v"
        await objects.create(secret)
    maps, secrets = Informer(objects, Kind.CONFIGMAP), Informer(objects, Kind.SECRET)
    runs = [asyncio.create_task(maps.run()), asyncio.create_task(secrets.run())]
    try:
        view = ConfigView(config_maps=maps, secrets=secrets)
        await view.wait_synced()
        pushed = NodeConfig.of(NodeConfig.refs_of([pod_using("web")]), view)
        assert [c.metadata.name for c in pushed.config_maps] == ["env-cm", "vol-cm"]
        assert [s.metadata.name for s in pushed.secrets] == ["env-secret"]
        assert all(not s.metadata.resource_version for s in pushed.secrets)
        assert (
            NodeConfig.of(NodeConfig.refs_of([factories.pod(name="plain")]), view) == NodeConfig()
        ), "a node whose pods use nothing was sent ConfigMaps or Secrets"
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
