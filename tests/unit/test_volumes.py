"""The volume mechanism's pure parts and its node side without mounting: the atomic writer,
payloads, hostPath type checks, subPath confinement, capabilities and the OCI config."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nodeagent.pods import privileges
from nodeagent.pods.configs import Configs
from nodeagent.pods.fields import PodPlace
from nodeagent.pods.volumes import atomic, sources
from nodeagent.pods.volumes.host import HostPathError, VolumeHost
from nodeagent.pods.volumes.mounts import MountError, VolumeDir, container_mounts
from nodeagent.pods.volumes.sources import File, PayloadError
from nodeagent.runtime import ContainerSpec, Privileges
from nodeagent.runtime.ocispec import DEFAULT_CAPABILITIES, NodeSettings, build
from pilothouse.v1 import objects_pb2


def test_the_atomic_writer_swaps_every_file_at_once(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert atomic.write(target, {"a": File(b"1"), "dir/b": File(b"2", 0o600)})
    first = os.readlink(target / "..data")
    assert (target / "a").read_bytes() == b"1" and (target / "dir" / "b").read_bytes() == b"2"
    assert (target / "dir" / "b").stat().st_mode & 0o777 == 0o600
    assert not atomic.write(target, {"a": File(b"1"), "dir/b": File(b"2", 0o600)}), (
        "an unchanged payload was written again"
    )
    assert atomic.write(target, {"a": File(b"3")})
    assert os.readlink(target / "..data") != first
    assert (target / "a").read_bytes() == b"3"
    assert not (target / "dir").exists(), "a name gone from the payload stayed"
    assert not (target / first).exists(), "the old version was not removed"
    with pytest.raises(ValueError, match="leaves its volume"):
        atomic.write(target, {"../escape": File(b"x")})


def test_payloads_follow_items_modes_and_optional() -> None:
    configs = Configs.of(
        [
            objects_pb2.ConfigMap(
                metadata=objects_pb2.ObjectMeta(name="cfg", namespace="default"),
                data={"a": "1", "b": "2"},
            )
        ],
        [],
    )
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default"))
    volume = objects_pb2.Volume(name="v")
    volume.config_map.name = "cfg"
    volume.config_map.default_mode = 0o440
    volume.config_map.items.add(key="b", path="sub/b.txt", mode=0o400)
    files = sources.payload(pod, volume, configs, PodPlace())
    assert files == {"sub/b.txt": File(b"2", 0o400)}
    volume.config_map.items.add(key="zzz", path="z")
    with pytest.raises(PayloadError, match="non-existent config key: zzz"):
        sources.payload(pod, volume, configs, PodPlace())
    missing = objects_pb2.Volume(name="m")
    missing.secret.secret_name = "nope"
    with pytest.raises(PayloadError, match='secret "nope" not found'):
        sources.payload(pod, missing, configs, PodPlace())
    missing.secret.optional = True
    assert sources.payload(pod, missing, configs, PodPlace()) == {}


def test_downward_api_files_hold_the_pods_fields() -> None:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(
            name="p", namespace="ns", uid="u", labels={"app": "web", "tier": "fe"}
        )
    )
    pod.spec.containers.add(name="c").resources.limits["memory"] = "64Mi"
    volume = objects_pb2.Volume(name="info")
    volume.downward_api.items.add(path="labels").field_ref.field_path = "metadata.labels"
    memory = volume.downward_api.items.add(path="mem").resource_field_ref
    memory.container_name, memory.resource, memory.divisor = "c", "limits.memory", "1Mi"
    files = sources.payload(pod, volume, Configs(), PodPlace())
    assert files["labels"].data == b'app="web"\ntier="fe"\n'
    assert files["mem"].data == b"64"


def test_host_path_types_are_checked_and_made(tmp_path: Path) -> None:
    host = VolumeHost(tmpfs=False)
    made = host.host_path(str(tmp_path / "new" / "dir"), "DirectoryOrCreate")
    assert made.is_dir()
    file = host.host_path(str(tmp_path / "f.txt"), "FileOrCreate")
    assert file.is_file()
    with pytest.raises(
        HostPathError, match=r"hostPath type check failed: .*f\.txt is not a directory"
    ):
        host.host_path(str(file), "Directory")
    with pytest.raises(HostPathError, match="is not a socket file"):
        host.host_path(str(file), "Socket")
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert host.host_path(str(path), "Socket") == path


def test_a_sub_path_cannot_leave_its_volume(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "escape").symlink_to("/etc")
    mount = objects_pb2.VolumeMount(name="v", mount_path="/x", sub_path="escape")
    with pytest.raises(MountError, match="resolves outside its volume"):
        container_mounts([mount], {"v": VolumeDir(volume)}, {}, expand=lambda s, e: s)
    made = objects_pb2.VolumeMount(name="v", mount_path="/y", sub_path_expr="$(POD)/logs")
    [bound] = container_mounts(
        [made],
        {"v": VolumeDir(volume)},
        {"POD": "web"},
        expand=lambda s, e: s.replace("$(POD)", e["POD"]),
    )
    assert bound.source == str(volume / "web" / "logs") and (volume / "web" / "logs").is_dir()
    assert bound.options == ("rbind", "rprivate")


def test_capabilities_add_and_drop_as_containerd_does() -> None:
    caps = objects_pb2.Capabilities(add=["NET_ADMIN"], drop=["KILL", "cap_chown"])
    got = privileges.capabilities(caps)
    assert "CAP_NET_ADMIN" in got and "CAP_KILL" not in got and "CAP_CHOWN" not in got
    assert privileges.capabilities(objects_pb2.Capabilities(drop=["ALL"])) == ()
    everything = privileges.capabilities(objects_pb2.Capabilities(add=["ALL"], drop=["SYS_ADMIN"]))
    assert "CAP_SYS_TIME" in everything and "CAP_SYS_ADMIN" not in everything
    assert privileges.capabilities(objects_pb2.Capabilities()) == DEFAULT_CAPABILITIES


def test_the_oci_config_carries_privileges_and_pod_namespaces() -> None:
    spec = ContainerSpec(
        id="c",
        hostname="h",
        rootfs="/r",
        args=("sh",),
        uid=1000,
        gid=3000,
        privileges=Privileges(
            capabilities=("CAP_NET_BIND_SERVICE",),
            read_only_root=True,
            additional_gids=(4000, 2000),
            sysctls=(("net.ipv4.ip_unprivileged_port_start", "0"),),
        ),
        namespaces={"ipc": "/pods/x/ns/ipc", "pid": "/pods/x/ns/pid"},
    )
    config = build(spec, settings=NodeSettings(), rootfs="/r")
    assert config["root"]["readonly"] is True
    process = config["process"]
    assert process["user"] == {"uid": 1000, "gid": 3000, "additionalGids": [4000, 2000]}
    assert process["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]
    assert process["noNewPrivileges"] is True
    namespaces = {n["type"]: n.get("path") for n in config["linux"]["namespaces"]}
    assert namespaces["ipc"] == "/pods/x/ns/ipc" and namespaces["pid"] == "/pods/x/ns/pid"
    assert config["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    privileged = build(
        ContainerSpec(
            id="p", hostname="h", rootfs="/r", args=("sh",), privileges=Privileges(privileged=True)
        ),
        settings=NodeSettings(),
        rootfs="/r",
    )
    assert "CAP_SYS_ADMIN" in privileged["process"]["capabilities"]["bounding"]
    assert privileged["linux"]["maskedPaths"] == [] and not privileged["process"]["noNewPrivileges"]
