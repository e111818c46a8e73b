"""The OCI config built for a container: namespaces, limits, capabilities, paths (no root)."""

from __future__ import annotations

import resource

import pytest

from nodeagent.runtime import ContainerSpec, Resources
from nodeagent.runtime.ocispec import (
    DEFAULT_CAPABILITIES,
    NodeSettings,
    build,
    cgroups_path,
    cpu_shares,
)

SETTINGS = NodeSettings(cgroup_parent="/pilothouse", nofile_limit=20000)


def _spec(**changes: object) -> ContainerSpec:
    fields: dict[str, object] = {
        "id": "default_web-1_nginx_0",
        "hostname": "web-1",
        "rootfs": "/r",
        "args": ("/bin/httpd", "-f"),
    }
    fields.update(changes)
    return ContainerSpec(**fields)  # type: ignore[arg-type]


def _config(**changes: object) -> dict:  # type: ignore[type-arg]
    return build(_spec(**changes), settings=SETTINGS, rootfs="/state/c/bundle/rootfs")


def test_every_namespace_is_new_and_the_hostname_is_the_pods() -> None:
    cfg = _config()
    kinds = {ns["type"] for ns in cfg["linux"]["namespaces"]}
    assert kinds == {"pid", "mount", "uts", "ipc", "network", "cgroup"}
    assert all("path" not in ns for ns in cfg["linux"]["namespaces"]), "a namespace was shared"
    assert cfg["hostname"] == "web-1"


def test_a_pod_network_namespace_is_joined_not_created() -> None:
    cfg = _config(netns_path="/run/netns/pod-1")
    net = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] == "network"]
    assert net == [{"type": "network", "path": "/run/netns/pod-1"}]


def test_process_args_env_cwd_and_user() -> None:
    cfg = _config(env=("A=1",), cwd="/srv", uid=1000, gid=100)
    proc = cfg["process"]
    assert proc["args"] == ["/bin/httpd", "-f"]
    assert "A=1" in proc["env"]
    assert any(e.startswith("PATH=") for e in proc["env"]), "a container without PATH finds nothing"
    assert "HOSTNAME=web-1" in proc["env"]
    assert proc["cwd"] == "/srv"
    assert proc["user"] == {"uid": 1000, "gid": 100}
    assert proc["terminal"] is False


def test_an_image_path_is_not_overridden() -> None:
    env = _config(env=("PATH=/opt/bin",))["process"]["env"]
    assert [e for e in env if e.startswith("PATH=")] == ["PATH=/opt/bin"]


def test_no_command_is_refused() -> None:
    with pytest.raises(ValueError, match="no command"):
        _config(args=())


def test_dockers_default_capabilities_and_no_new_privileges() -> None:
    proc = _config()["process"]
    caps = proc["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        assert sorted(caps[kind]) == sorted(DEFAULT_CAPABILITIES), kind
    assert "ambient" not in caps and "inheritable" not in caps
    assert "CAP_SYS_ADMIN" not in caps["bounding"], "containers must not get SYS_ADMIN"
    assert len(DEFAULT_CAPABILITIES) == 14
    assert proc["noNewPrivileges"] is True


def test_masked_and_read_only_paths() -> None:
    linux = _config()["linux"]
    for path in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"):
        assert path in linux["maskedPaths"]
    for path in ("/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"):
        assert path in linux["readonlyPaths"]


def test_standard_mounts() -> None:
    mounts = {m["destination"]: m for m in _config()["mounts"]}
    assert set(mounts) == {
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    }
    assert "ro" in mounts["/sys"]["options"]
    assert "ro" in mounts["/sys/fs/cgroup"]["options"]


def test_limits_become_cgroup_resources() -> None:
    res = Resources(
        memory_limit_bytes=128 << 20, cpu_limit_millis=250, cpu_request_millis=100, pids_limit=99
    )
    r = _config(resources=res)["linux"]["resources"]
    assert r["memory"] == {"limit": 128 << 20, "swap": 128 << 20}, "swap must equal the limit"
    assert r["cpu"]["quota"] == 25_000 and r["cpu"]["period"] == 100_000
    assert r["cpu"]["shares"] == 102
    assert r["pids"] == {"limit": 99}


def test_no_limits_means_no_memory_or_cpu_section_but_always_pids() -> None:
    r = _config()["linux"]["resources"]
    assert "memory" not in r and "cpu" not in r
    assert r["pids"] == {"limit": 1024}


def test_without_swap_accounting_swap_is_left_out() -> None:
    settings = NodeSettings(swap_limit=False)
    cfg = build(
        _spec(resources=Resources(memory_limit_bytes=1 << 20)), settings=settings, rootfs="/r"
    )
    assert cfg["linux"]["resources"]["memory"] == {"limit": 1 << 20}


@pytest.mark.parametrize(
    ("millis", "shares"), [(None, None), (0, 2), (1, 2), (250, 256), (1000, 1024), (2500, 2560)]
)
def test_cpu_shares_follow_kubernetes(millis: int | None, shares: int | None) -> None:
    assert cpu_shares(millis) == shares


def test_cgroups_path_is_always_absolute() -> None:
    cfg = _config()
    assert cfg["linux"]["cgroupsPath"] == "/pilothouse/default_web-1_nginx_0"
    assert (
        cgroups_path("x", NodeSettings(cgroup_parent="pilothouse-test/a/"))
        == "/pilothouse-test/a/x"
    )
    assert cgroups_path("x", NodeSettings(cgroup_parent="/")) == "/x"


def test_nofile_never_exceeds_the_callers_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    settings = NodeSettings.from_host()
    assert settings.nofile_limit <= 1_048_576
    if hard != resource.RLIM_INFINITY:
        assert settings.nofile_limit <= hard, "runc would fail: nofile above the agent's own"
    cfg = build(_spec(), settings=settings, rootfs="/r")
    nofile = [r for r in cfg["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE"]
    assert nofile == [
        {"type": "RLIMIT_NOFILE", "hard": settings.nofile_limit, "soft": settings.nofile_limit}
    ]


def test_root_is_the_given_rootfs_and_writable() -> None:
    assert _config()["root"] == {"path": "/state/c/bundle/rootfs", "readonly": False}
