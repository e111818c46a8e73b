"""The VM harness's pure parts (pilothouse.cli.vm), no QEMU: the image's cache key follows its
recipe, a machine's kernel command line carries its address and name, QEMU's command line
follows the accelerator, and a seed holds the host key (0600) and root's authorized keys.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from pilothouse.cli.vm import seed
from pilothouse.cli.vm.image import Image, Recipe
from pilothouse.cli.vm.machine import MachineSpec, kernel_command_line, qemu_argv

SPEC = MachineSpec(
    name="vm-2", address="10.77.0.12", gateway="10.77.0.1", prefix_length=24,
    mac="52:54:00:aa:bb:cc", tap="t-vm-2",
)  # fmt: skip


def test_the_cache_key_follows_the_recipe() -> None:
    base = Recipe(mirror="http://deb.example/debian")
    assert base.key() == Recipe(mirror="http://deb.example/debian").key()
    assert base.key() != Recipe(mirror="http://deb.example/debian", size_mib=8192).key()
    more = Recipe(mirror="http://deb.example/debian", packages=(*base.packages, "strace"))
    assert base.key() != more.key()


def test_a_machine_boots_with_its_address_and_name() -> None:
    line = kernel_command_line(SPEC)
    assert "ip=10.77.0.12::10.77.0.1:255.255.255.0:vm-2:eth0:off" in line.split()
    assert "systemd.hostname=vm-2" in line.split() and "root=/dev/vda" in line.split()
    assert {"no_timer_check", "panic=5"} <= set(line.split()), "an emulated boot may panic"


def test_qemu_runs_emulated_or_under_kvm(tmp_path: Path) -> None:
    image = Image(directory=tmp_path, key="k", build_seconds=1.0, kernel_release="6.1.0")
    files = {"overlay": tmp_path / "o", "seed": tmp_path / "s", "serial": tmp_path / "l"}
    tcg = qemu_argv(SPEC, image=image, accel="tcg", **files)
    kvm = qemu_argv(SPEC, image=image, accel="kvm", **files)
    assert "tcg,tb-size=128" in tcg and "kvm" not in tcg
    assert kvm[kvm.index("-accel") + 1] == "kvm" and "host" in kvm
    assert f"name=opt/pilothouse/seed,file={tmp_path / 's'}" in tcg
    assert "tap,id=net0,ifname=t-vm-2,script=no,downscript=no" in tcg


def test_a_seed_holds_the_host_key_and_the_authorized_key(tmp_path: Path) -> None:
    host = seed.host_key(tmp_path, "vm-1")
    client = seed.client_key(tmp_path)
    assert seed.host_key(tmp_path, "vm-1") == host, "a machine's host key is made once"
    path = seed.write_seed(tmp_path / "seed.tar", host=host, authorized_keys=client.public)
    with tarfile.open(path) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert members["etc/ssh/ssh_host_ed25519_key"].mode == 0o600
        assert members["root/.ssh"].isdir() and members["root/.ssh"].mode == 0o700
        keys = archive.extractfile("root/.ssh/authorized_keys")
        assert keys is not None and keys.read().decode() == client.public
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert seed.known_hosts_line("10.77.0.11", host).startswith("10.77.0.11 ssh-ed25519 ")
