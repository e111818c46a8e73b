"""The local cluster's small parts, without starting a cluster: the CLI config `up` writes and
`down` takes back, the registry's bound address, the restart policy, the data-dir layout, the
refusal of a flag value `up` cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pilothouse import config
from pilothouse.cli.cluster import clientconfig, local
from pilothouse.cli.cluster import registry as local_registry
from pilothouse.cli.cluster.hosts import SharedNetwork, node_names
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.supervisor import RestartPolicy


def test_up_points_the_cli_at_its_server_and_keeps_the_persons_other_settings(
    tmp_path: Path,
) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("namespace: team-a\nserver: 10.0.0.1:7070\n")

    clientconfig.point_at(file, "127.0.0.1:4242")

    resolved = config.resolve(config_path=str(file), environ={})
    assert resolved.server == "127.0.0.1:4242" and resolved.namespace == "team-a"
    assert file.stat().st_mode & 0o777 == 0o600, "the CLI config is readable by other users"

    assert clientconfig.forget(file, "127.0.0.1:4242")
    assert yaml.safe_load(file.read_text()) == {"namespace": "team-a"}


def test_down_leaves_a_server_the_person_set_since(
    tmp_path: Path,
) -> None:
    file = tmp_path / "config.yaml"
    clientconfig.point_at(file, "127.0.0.1:4242")
    file.write_text("server: 10.0.0.9:7070\n")  # changed by hand after `up`
    assert not clientconfig.forget(file, "127.0.0.1:4242")
    assert yaml.safe_load(file.read_text()) == {"server": "10.0.0.9:7070"}

    clientconfig.point_at(file, "127.0.0.1:4242")
    assert clientconfig.forget(file, "127.0.0.1:4242")
    assert config.resolve(config_path=str(file), environ={}).source is config.Source.DEFAULT


def test_the_config_file_is_the_one_the_cli_reads(tmp_path: Path) -> None:
    env = {"PILOTHOUSE_CONFIG": str(tmp_path / "c.yaml"), "HOME": "/nonexistent"}
    assert clientconfig.path(None, env) == tmp_path / "c.yaml"
    assert clientconfig.path(None, {"HOME": str(tmp_path)}) == (
        tmp_path / ".pilothouse" / "config.yaml"
    )
    assert clientconfig.path(tmp_path / "x.yaml", env) == tmp_path / "x.yaml"


def test_the_registry_address_is_read_from_its_log_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "registry.log"
    log.write_text('time="…" level=info msg="listening on 127.0.0.1:5000" go.version=go1.19\n')
    offset = log.stat().st_size
    assert local_registry.bound_address(log, offset=offset) is None, "an old run's port was used"
    with log.open("a") as f:
        f.write('time="…" level=info msg="listening on 127.0.0.1:41234" go.version=go1.19\n')
    assert local_registry.bound_address(log, offset=offset) == "127.0.0.1:41234"


def test_the_nodes_mirror_docker_io_to_the_local_registry(tmp_path: Path) -> None:
    from pilothouse.oci.registries import RegistriesConfig

    path = local_registry.write_mirrors(tmp_path / "r.yaml", registry_address="127.0.0.1:5000")
    endpoints = RegistriesConfig.load(path).endpoints("docker.io")
    assert endpoints[0].url == "http://127.0.0.1:5000", (
        "busybox:stable would not be pulled from the local registry"
    )


def test_restart_delays_double_up_to_the_maximum() -> None:
    policy = RestartPolicy(initial=0.5, maximum=10.0, reset_after=30.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_each_data_dir_has_its_own_cgroup_parent_and_node_dirs(tmp_path: Path) -> None:
    one, two = Layout.at(tmp_path / "a"), Layout.at(tmp_path / "b")
    assert one.cgroup_parent != two.cgroup_parent
    assert one.node_cgroup_parent("node-1").startswith(one.cgroup_parent + "/")
    assert all(p.is_relative_to(one.data_dir) for p in one.made())
    assert one.up_log not in one.made(), "`down` would delete the log that says what happened"
    assert node_names(3) == ["node-1", "node-2", "node-3"]


def test_a_shared_host_runs_the_agent_unchanged_on_loopback() -> None:
    network = SharedNetwork()
    [host] = network.create("c0123456789", ["node-1"])
    assert host.name == "node-1"
    assert network.service_host == "127.0.0.1"
    assert host.command(["agent", "--x"]) == ["agent", "--x"]
    assert host.address == "127.0.0.1"
    assert host.reach("127.0.0.1:7070") == "127.0.0.1:7070"


def test_nodes_on_the_bridge_pull_from_the_registry_over_plain_http(tmp_path: Path) -> None:
    from pilothouse.oci.registries import RegistriesConfig

    path = local_registry.write_mirrors(tmp_path / "r.yaml", registry_address="172.30.0.1:5000")
    endpoints = RegistriesConfig.load(path).endpoints("docker.io")
    assert endpoints[0].url == "http://172.30.0.1:5000", (
        "a node in its own namespace would not pull busybox:stable from the local registry"
    )


def test_node_i_gets_the_ith_block_the_control_plane_allocates() -> None:
    from pilothouse.cli.cluster.hosts import pod_cidrs

    assert pod_cidrs(node_names(3)) == {
        "node-1": "10.244.0.0/24",
        "node-2": "10.244.1.0/24",
        "node-3": "10.244.2.0/24",
    }


def test_down_takes_back_the_admin_credentials_up_set_and_only_those(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("namespace: team-a\nca-cert: /old/ca.crt\n")
    creds = {"ca-cert": "/d/ca.crt", "client-cert": "/d/admin.crt", "client-key": "/d/admin.key"}
    clientconfig.point_at(file, "172.30.0.1:4242", creds)
    resolved = config.resolve(config_path=str(file), environ={})
    assert resolved.ca_cert == Path("/d/ca.crt") and resolved.client_key == Path("/d/admin.key")
    assert clientconfig.forget(file, "172.30.0.1:4242", creds)
    assert yaml.safe_load(file.read_text()) == {"namespace": "team-a"}

    clientconfig.point_at(file, "172.30.0.1:4242")  # plaintext: no stale credentials kept
    assert yaml.safe_load(file.read_text()) == {"namespace": "team-a", "server": "172.30.0.1:4242"}


async def test_up_refuses_a_negative_pod_eviction_timeout_before_starting_anything(
    tmp_path: Path,
) -> None:
    with pytest.raises(local.ClusterError, match="--pod-eviction-timeout must not be negative"):
        await local.up(data_dir=tmp_path / "cluster", pod_eviction_timeout=-1)
    assert not (tmp_path / "cluster").exists()
