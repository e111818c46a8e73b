"""The roles a host can take, and what each puts there: Debian packages, unit, settings file.

Paths on the host are fixed (the README's "Running on VMs" names the same ones): the package
in a virtualenv under `/opt/pilothouse`, its wheels beside it, `pilothouse` linked into
/usr/local/bin (what the units start), settings in /etc/default, the join token under
/etc/pilothouse (0600, removed once the node has joined), state under /var/lib/pilothouse.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

OPT = "/opt/pilothouse"
WHEELS = f"{OPT}/wheels"
VENV = f"{OPT}/venv"
INSTALLED_MARK = f"{OPT}/installed.sha256"  # the digest of the wheels installed in the venv
BIN = "/usr/local/bin/pilothouse"
TOKEN_FILE = "/etc/pilothouse/join-token"
REGISTRIES_FILE = "/etc/pilothouse/registries.yaml"
# What a node's kernel must do for pods (nodeagent.services.requirements): overlayfs, forwarding
# between pods and nodes, bridged pod traffic through netfilter (Services' replies un-DNATed).
AGENT_KERNEL_FILES = {
    "/etc/modules-load.d/pilothouse.conf": b"overlay\nbr_netfilter\n",
    "/etc/sysctl.d/90-pilothouse.conf": (
        b"net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n"
    ),
}
# Where `node add` records how the node's host is reached, for `node remove`.
SSH_ANNOTATION = "pilothouse.io/ssh-target"


AGENT_PACKAGES = (
    "runc",
    "conmon",
    "containernetworking-plugins",
    "iproute2",
    "iptables",
    "nftables",
    "conntrack",
    "python3",
    "python3-venv",
    "ca-certificates",
)


class Role(enum.Enum):
    AGENT = "agent"
    CONTROLPLANE = "controlplane"


@dataclass(frozen=True, slots=True)
class RoleFiles:
    unit: str  # the systemd unit's name, also its file name in deploy/systemd/
    defaults: str  # its settings file (EnvironmentFile)
    variable: str  # the variable the unit reads its arguments from
    state_dir: str
    packages: tuple[str, ...]  # Debian packages it needs
    disable: tuple[str, ...] = ()  # units Debian starts on install that Pilothouse replaces


FILES = {
    Role.AGENT: RoleFiles(
        unit="pilothouse-agent.service",
        defaults="/etc/default/pilothouse-agent",
        variable="PILOTHOUSE_AGENT_ARGS",
        state_dir="/var/lib/pilothouse/agent",
        packages=AGENT_PACKAGES,
    ),
    Role.CONTROLPLANE: RoleFiles(
        unit="pilothouse-controlplane.service",
        defaults="/etc/default/pilothouse-controlplane",
        variable="PILOTHOUSE_CONTROLPLANE_ARGS",
        state_dir="/var/lib/pilothouse/controlplane",
        packages=("etcd-server", "iproute2", "python3", "python3-venv", "ca-certificates"),
        disable=("etcd.service",),
    ),
}


def unit_text(role: Role, source: Path) -> str:
    """The role's unit as deploy/systemd/ has it, in the source tree at `source`."""
    path = source / "deploy" / "systemd" / FILES[role].unit
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run this from a Pilothouse source tree (its deploy/systemd/)"
        )
    return path.read_text()
