"""What the Services data plane needs from a node, checked without changing anything.

- `nft` ≥ 1.0 and a kernel ≥ 5.13 (kube-proxy's nftables floor: concatenated `th dport`
  lookups in verdict maps);
- IPv4 forwarding in the node's namespace: pod → ClusterIP → pod on another node is routed;
- `br_netfilter` with `net.bridge.bridge-nf-call-iptables=1` in the node's namespace: a pod
  reaching a ClusterIP whose endpoint sits on the same bridge gets its reply bridged straight
  back (layer 2); only br_netfilter makes that reply pass conntrack to be un-DNATed, else the
  client sees an answer from the pod IP, not the ClusterIP, and the connection hangs;
- (not checkable here) hairpin mode on each pod's bridge port (CNI bridge `"hairpinMode":
  true`): a pod reaching itself through its Service has its packet bridged back out of the
  port it came in on, which a bridge refuses without hairpin mode.

`check` returns what is missing (empty when all is there); the caller logs or refuses.
"""

from __future__ import annotations

import asyncio
import enum
import os
import re
from dataclasses import dataclass

MIN_NFT = (1, 0)
MIN_KERNEL = (5, 13)
_FORWARD = "/proc/sys/net/ipv4/ip_forward"
_BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"


class Need(enum.Enum):
    NFT = "nft"
    KERNEL = "kernel"
    IP_FORWARD = "ip_forward"
    BR_NETFILTER = "br_netfilter"


@dataclass(frozen=True, slots=True)
class Missing:
    """One unmet need, with what to do about it."""

    need: Need
    message: str


async def check(*, netns: str | None = None, nft: str = "nft") -> tuple[Missing, ...]:
    """What the data plane lacks in `netns` (None: the caller's namespace)."""
    prefix = ["nsenter", f"--net={netns}", "--"] if netns else []
    missing: list[Missing] = []
    code, out = await _run([nft, "--version"])
    version = _version(out)
    if code != 0 or version is None or version < MIN_NFT:
        missing.append(
            Missing(Need.NFT, f"nft ≥ 1.0 is needed (found: {out.strip() or 'none'}); "
                    "install Debian's nftables")
        )  # fmt: skip
    kernel = _version(os.uname().release)
    if kernel is not None and kernel < MIN_KERNEL:
        missing.append(
            Missing(Need.KERNEL, f"kernel ≥ 5.13 is needed, this is {os.uname().release}")
        )
    code, out = await _run([*prefix, "cat", _FORWARD])
    if out.strip() != "1":
        missing.append(
            Missing(Need.IP_FORWARD, "IPv4 forwarding is off: sysctl -w net.ipv4.ip_forward=1")
        )
    code, out = await _run([*prefix, "cat", _BRIDGE_NF])
    if code != 0:
        missing.append(
            Missing(Need.BR_NETFILTER, "br_netfilter is not loaded: modprobe br_netfilter")
        )
    elif out.strip() != "1":
        missing.append(
            Missing(
                Need.BR_NETFILTER,
                "bridged pod traffic bypasses netfilter: "
                "sysctl -w net.bridge.bridge-nf-call-iptables=1",
            )
        )
    return tuple(missing)


def _version(text: str) -> tuple[int, int] | None:
    found = re.search(r"(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


async def _run(argv: list[str]) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except FileNotFoundError:
        return 127, ""
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")
