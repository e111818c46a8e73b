"""The files and units the VM image carries beyond Debian's packages (part of its recipe).

Invariants: everything here is static text (no per-machine value: those come with the seed at
boot), so it can be hashed into the image's cache key; the seed unit runs before sshd, so sshd
never starts without the machine's own host key.
"""

from __future__ import annotations

SEED_FW_CFG = "opt/pilothouse/seed"  # the fw_cfg name QEMU hands the seed under
SEEDED_MARK = "pilothouse-vm: seeded"  # written to the serial console once the seed is applied

_SEED_SCRIPT = f"""#!/bin/sh
# Apply this machine's seed, a tar archive QEMU hands over as fw_cfg "{SEED_FW_CFG}": the SSH
# host key, root's authorized keys. Without a seed (booted by hand) sshd gets fresh host keys.
modprobe qemu_fw_cfg 2>/dev/null
seed=/sys/firmware/qemu_fw_cfg/by_name/{SEED_FW_CFG}/raw
if [ -r "$seed" ]; then
  tar -x -p -f "$seed" -C / --no-overwrite-dir
fi
ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A
echo "{SEEDED_MARK}" > /dev/ttyS0 2>/dev/null
exit 0
"""

_SEED_UNIT = """[Unit]
Description=Pilothouse VM seed: SSH host key and authorized keys from QEMU fw_cfg
DefaultDependencies=no
After=local-fs.target systemd-remount-fs.service
Before=ssh.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/pilothouse-vm-seed

[Install]
WantedBy=sysinit.target
"""

_FILES: dict[str, tuple[int, str]] = {
    "usr/local/sbin/pilothouse-vm-seed": (0o755, _SEED_SCRIPT),
    "etc/systemd/system/pilothouse-vm-seed.service": (0o644, _SEED_UNIT),
    "etc/fstab": (0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 0\n"),
    "etc/hostname": (0o644, "pilothouse-vm\n"),
    "etc/hosts": (0o644, "127.0.0.1 localhost\n"),
    "etc/resolv.conf": (0o644, "# offline: this machine resolves no names outside its cluster\n"),
    "etc/ssh/sshd_config.d/pilothouse-vm.conf": (
        0o644,
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n"
        "PermitRootLogin prohibit-password\n",
    ),
    # The journal in memory: fewer writes to the overlay disk, which emulation makes slow.
    "etc/systemd/journald.conf.d/pilothouse-vm.conf": (
        0o644,
        "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n",
    ),
    "etc/systemd/network/.keep": (0o644, ""),
}

ENABLE = (
    "systemd-networkd.service",
    "systemd-network-generator.service",
    "pilothouse-vm-seed.service",
    "ssh.service",
)
# Periodic jobs that would compete for an emulated CPU, and nothing a cluster needs.
MASK = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-timesyncd.service",
    "getty@tty1.service",
)
# Debian enables etcd on install; a Pilothouse control plane runs its own.
DISABLE = ("etcd.service",)


def files() -> dict[str, tuple[int, str]]:
    """Path (relative to the image's root) -> (mode, text)."""
    return dict(_FILES)
