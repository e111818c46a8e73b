"""imagePullSecrets: Docker config secrets become the registry credentials of a pod's pulls."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodeagent.pods.configs import Configs
from pilothouse import manifests
from pilothouse.oci import dockerconfig
from pilothouse.oci.registries import HostConfig, RegistriesConfig
from pilothouse.v1 import objects_pb2
from tests.unit.pods_support import Node, make_pod, running


def config_json(auths: dict[str, dict[str, str]]) -> bytes:
    return json.dumps({"auths": auths}).encode()


def test_docker_config_entries_become_credentials_by_registry_host() -> None:
    auth = base64.b64encode(b"robot:s3cret").decode()
    found = dockerconfig.credentials(
        config_json(
            {
                "https://index.docker.io/v1/": {"auth": auth},
                "registry.example.com:5000": {"username": "me", "password": "pw"},
                "https://ghcr.io/v2/": {"auth": "!!not base64"},
            }
        )
    )
    assert found == {
        "docker.io": dockerconfig.Credentials("robot", "s3cret"),
        "registry.example.com:5000": dockerconfig.Credentials("me", "pw"),
    }
    assert "s3cret" not in repr(found), "a password would show in a log line"
    legacy = dockerconfig.credentials(json.dumps({"quay.io": {"auth": auth}}).encode(), legacy=True)
    assert legacy == {"quay.io": dockerconfig.Credentials("robot", "s3cret")}
    assert dockerconfig.credentials(b"not json") == {}


def test_credentials_join_the_nodes_registry_settings() -> None:
    node = RegistriesConfig(configs={"r.example": HostConfig(ca_file="/ca.pem")})
    merged = dockerconfig.with_credentials(
        node, {"r.example": dockerconfig.Credentials("me", "pw")}
    )
    assert merged.configs["r.example"] == HostConfig(
        username="me", password="pw", ca_file="/ca.pem"
    )
    assert node.configs["r.example"].username == "", "the node's own config was changed"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    yield n
    await n.close()


async def test_a_pods_pull_uses_its_pull_secret_and_reports_a_missing_one(node: Node) -> None:
    pod = make_pod()
    pod.spec.image_pull_secrets.add(name="regcred")
    pod.spec.image_pull_secrets.add(name="absent")
    manifests.set_defaults(pod)
    pod.spec.containers[0].image_pull_policy = "Always"
    secret = objects_pb2.Secret(
        metadata=objects_pb2.ObjectMeta(name="regcred", namespace="default"),
        type="kubernetes.io/dockerconfigjson",
    )
    secret.data[".dockerconfigjson"] = config_json(
        {"docker.io": {"username": "u", "password": "p"}}
    )
    await node.manager.start()
    node._started = True
    await node.manager.sync([pod], configs=Configs.of([], [secret]))
    await node.until("Running", running)
    assert node.images.pull_credentials[-1] == {"docker.io": dockerconfig.Credentials("u", "p")}
    events = [e for w in node.manager._workers.values() for e in w.events.drain()]
    assert any(
        e.reason == "FailedToRetrieveImagePullSecret" and "(absent)" in e.message for e in events
    ), [e.message for e in events]
