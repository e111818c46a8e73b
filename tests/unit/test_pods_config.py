"""Pods and their configuration on an agent over the fake runtime: env from ConfigMaps, Secrets
and the pod's fields, CreateContainerConfigError, configMap volumes updated atomically (and
subPath mounts not), securityContext, and volumes removed with the pod."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodeagent.pods.configs import Configs
from nodeagent.runtime import ContainerSpec
from pilothouse import manifests
from pilothouse.v1 import objects_pb2
from tests.unit.pods_support import Node, make_pod, running, state_of


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    yield n
    await n.close()


def config_map(data: dict[str, str], name: str = "cfg") -> objects_pb2.ConfigMap:
    return objects_pb2.ConfigMap(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"), data=data
    )


def secret(data: dict[str, bytes], name: str = "creds") -> objects_pb2.Secret:
    return objects_pb2.Secret(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"), data=data
    )


async def push(node: Node, pod: objects_pb2.Pod, *objects: object) -> None:
    maps = [o for o in objects if isinstance(o, objects_pb2.ConfigMap)]
    secrets = [o for o in objects if isinstance(o, objects_pb2.Secret)]
    manifests.set_defaults(pod)
    if not node._started:
        await node.manager.start()
        node._started = True
    await node.manager.sync([pod], configs=Configs.of(maps, secrets))


def read(path: Path) -> str:
    return path.read_text()


def exists(path: Path) -> bool:
    return path.exists()


def spec_of(node: Node, container_id: str) -> ContainerSpec:
    return node.runtime.node.containers[container_id].spec


def env_of(spec: ContainerSpec) -> dict[str, str]:
    return dict(item.split("=", 1) for item in spec.env)


async def test_env_comes_from_configmaps_secrets_and_the_pod(node: Node) -> None:
    pod = make_pod()
    app = pod.spec.containers[0]
    app.env.add(name="COLOR").value_from.config_map_key_ref.SetInParent()
    app.env[0].value_from.config_map_key_ref.name = "cfg"
    app.env[0].value_from.config_map_key_ref.key = "color"
    app.env.add(name="PASSWORD").value_from.secret_key_ref.SetInParent()
    app.env[1].value_from.secret_key_ref.name = "creds"
    app.env[1].value_from.secret_key_ref.key = "password"
    app.env.add(name="POD").value_from.field_ref.field_path = "metadata.name"
    app.env.add(name="NODE").value_from.field_ref.field_path = "spec.nodeName"
    app.env.add(name="GREETING", value="hello $(COLOR)")
    source = app.env_from.add(prefix="CFG_")
    source.config_map_ref.name = "cfg"
    await push(
        node, pod, config_map({"color": "blue", "size": "L"}), secret({"password": b"s3cret"})
    )
    await node.until("Running", running)
    spec = spec_of(node, "default_web_app_0")
    env = env_of(spec)
    assert env["COLOR"] == "blue" and env["PASSWORD"] == "s3cret"
    assert env["POD"] == "web" and env["NODE"] == "n1"
    assert env["CFG_color"] == "blue" and env["CFG_size"] == "L", "envFrom keys are missing"
    assert env["GREETING"] == "hello blue", "$(VAR) did not expand a variable from a ConfigMap"
    assert spec.secret_env == frozenset({"PASSWORD"}), "the runtime would write it to disk"


async def test_a_missing_key_keeps_the_container_from_starting_until_it_is_pushed(
    node: Node,
) -> None:
    pod = make_pod()
    ref = pod.spec.containers[0].env.add(name="COLOR").value_from.config_map_key_ref
    ref.name, ref.key = "cfg", "color"
    await push(node, pod, config_map({"size": "L"}))
    seen = await node.until(
        "CreateContainerConfigError",
        lambda p: state_of(p) == "waiting:CreateContainerConfigError",
    )
    assert seen is not None
    waiting = seen.status.container_statuses[0].state.waiting
    assert waiting.message == "couldn't find key color in ConfigMap default/cfg"
    assert not node.runtime.node.containers, "a container was made without its value"
    await push(node, pod, config_map({"size": "L", "color": "red"}))
    await node.until("Running", running)
    assert env_of(spec_of(node, "default_web_app_0"))["COLOR"] == "red"


async def test_an_optional_missing_configmap_starts_without_it(node: Node) -> None:
    pod = make_pod()
    ref = pod.spec.containers[0].env.add(name="COLOR").value_from.config_map_key_ref
    ref.name, ref.key, ref.optional = "nothing", "color", True
    await push(node, pod)
    await node.until("Running", running)
    assert "COLOR" not in env_of(spec_of(node, "default_web_app_0"))


async def test_configmap_volume_files_change_atomically_and_subpath_stays(node: Node) -> None:
    pod = make_pod()
    volume = pod.spec.volumes.add(name="conf")
    volume.config_map.name = "cfg"
    app = pod.spec.containers[0]
    app.volume_mounts.add(name="conf", mount_path="/etc/app")
    app.volume_mounts.add(name="conf", mount_path="/etc/one.conf", sub_path="one")
    await push(node, pod, config_map({"one": "v1", "two": "x"}))
    await node.until("Running", running)
    mounts = {m.target: m for m in spec_of(node, "default_web_app_0").mounts}
    whole, single = mounts["/etc/app"], mounts["/etc/one.conf"]
    assert "ro" in whole.options, "a configMap volume must be read-only"
    directory = Path(whole.source)
    assert (directory / "one").read_text() == "v1"
    assert os.readlink(directory / "one") == "..data/one", "not the kubelet's layout"
    before = os.readlink(directory / "..data")
    subpath = Path(single.source)
    assert read(subpath) == "v1" and directory in subpath.parents
    await push(node, pod, config_map({"one": "v2"}))
    assert (directory / "one").read_text() == "v2", "the file did not change with the push"
    assert os.readlink(directory / "..data") != before, "..data was not swapped"
    assert not (directory / "two").exists(), "a key removed from the ConfigMap stayed"
    assert not exists(subpath), "the version a subPath bound is kept on the node"


async def test_security_context_becomes_the_containers_privileges(node: Node) -> None:
    pod = make_pod()
    pod.spec.security_context.run_as_user = 1000
    pod.spec.security_context.run_as_group = 3000
    pod.spec.security_context.supplemental_groups.extend([4000])
    pod.spec.security_context.fs_group = 2000
    context = pod.spec.containers[0].security_context
    context.read_only_root_filesystem = True
    context.allow_privilege_escalation = False
    context.capabilities.drop.append("ALL")
    context.capabilities.add.append("NET_BIND_SERVICE")
    await push(node, pod)
    await node.until("Running", running)
    spec = spec_of(node, "default_web_app_0")
    assert (spec.uid, spec.gid) == (1000, 3000)
    granted = spec.privileges
    assert granted.capabilities == ("CAP_NET_BIND_SERVICE",)
    assert granted.read_only_root and granted.no_new_privileges
    assert granted.additional_gids == (4000, 2000)


async def test_run_as_non_root_refuses_an_image_running_as_root(node: Node) -> None:
    pod = make_pod()
    pod.spec.security_context.run_as_non_root = True
    await push(node, pod)
    seen = await node.until(
        "refused", lambda p: state_of(p) == "waiting:CreateContainerConfigError"
    )
    assert seen is not None
    assert seen.status.container_statuses[0].state.waiting.message == (
        'container has runAsNonRoot and image will run as root (pod: "web_default(uid-1)", '
        "container: app)"
    )


async def test_privileged_needs_the_nodes_permission(node: Node) -> None:
    pod = make_pod()
    pod.spec.containers[0].security_context.privileged = True
    await push(node, pod)
    seen = await node.until(
        "refused", lambda p: state_of(p) == "waiting:CreateContainerConfigError"
    )
    assert seen is not None
    assert "--allow-privileged" in seen.status.container_statuses[0].state.waiting.message


async def test_volumes_go_with_the_pod(node: Node) -> None:
    pod = make_pod()
    pod.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    pod.spec.volumes.add(name="conf").config_map.name = "cfg"
    pod.spec.containers[0].volume_mounts.add(name="scratch", mount_path="/scratch")
    await push(node, pod, config_map({"k": "v"}))
    await node.until("Running", running)
    volumes = node.state_dir / "pods" / "default_web_uid-1" / "volumes"
    assert (volumes / "kubernetes.io~empty-dir" / "scratch").is_dir()
    assert (volumes / "kubernetes.io~configmap" / "conf" / "k").read_text() == "v"
    await node.manager.sync([])
    await node.until("gone", lambda p: p is None)
    for _ in range(200):
        if not volumes.exists():
            break
        await asyncio.sleep(0.01)
    assert not volumes.exists(), "the pod's volumes stayed on the node"


async def test_a_restarted_agent_keeps_volume_files_until_its_first_push(node: Node) -> None:
    pod = make_pod()
    pod.spec.volumes.add(name="conf").config_map.name = "cfg"
    pod.spec.containers[0].volume_mounts.add(name="conf", mount_path="/etc/app")
    await push(node, pod, config_map({"color": "blue"}))
    await node.until("Running", running)
    directory = node.state_dir / "pods" / "default_web_uid-1" / "volumes"
    conf = directory / "kubernetes.io~configmap" / "conf"
    await node.restart_agent()  # no push yet: the agent has no ConfigMaps at all
    await node.until("Running", running)
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert read(conf / "color") == "blue", "a restart emptied the volume before any push"
    assert [c.id for c in await node.runtime.list()] == ["default_web_app_0"], "a restart"
    await node.manager.sync([pod], configs=Configs.of([config_map({"color": "red"})], []))
    assert read(conf / "color") == "red"
