"""The commands node hosts are made with: `ip` (iproute2) and `iptables`, and what they list.

Invariants: every command runs synchronously with a 30 s limit; a command that fails raises
`HostNetworkError` with the command line and its stderr, unless the caller said `check=False`
(clean-up, where a piece already gone is fine). Listings come from `ip -j` (JSON), never from
parsing human output, except `iptables -S`, which has no JSON form.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import subprocess
from pathlib import Path


class HostNetworkError(Exception):
    """A node host could not be made or removed; the message says what and why."""


def run(argv: list[str], *, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise HostNetworkError(f"{' '.join(argv)}: {proc.stderr.strip() or 'failed'}")
    return proc.stdout


def ip(*args: str, check: bool = True) -> str:
    return run(["ip", *args], check=check)


def routed(ignore_dev: str = "") -> dict[str, str]:
    """IPv4 destinations routed in the root namespace (all tables), and their devices."""
    out: dict[str, str] = {}
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if dst in ("", "default") or dev == ignore_dev:
            continue
        with contextlib.suppress(ValueError):
            ipaddress.ip_network(dst, strict=False)
            out[dst] = dev
    return out


def links() -> list[dict[str, str]]:
    return json.loads(ip("-j", "link", "show") or "[]")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_pids(ns: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", ns, check=False).split()]


def forward_rules(tag: str) -> list[str]:
    """The root FORWARD chain's rules tagged with the comment `tag`."""
    if not shutil.which("iptables"):
        return []
    lines = run(["iptables", "-S", "FORWARD"], check=False).splitlines()
    return [line for line in lines if f'"{tag}"' in line or f" {tag} " in f"{line} "]


def delete_forward_rules(tag: str) -> list[str]:
    """Delete the rules `forward_rules(tag)` finds; the rules deleted."""
    removed = []
    for rule in forward_rules(tag):
        spec = rule.split()
        if spec[:2] == ["-A", "FORWARD"]:
            args = [a.strip('"') for a in spec[2:]]
            run(["iptables", "-D", "FORWARD", *args], check=False)
            removed.append(rule)
    return removed
