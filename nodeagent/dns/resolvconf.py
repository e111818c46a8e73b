"""resolv.conf as data: parse a node's, render a pod's (pure).

Only the three keywords resolvers act on are kept: `nameserver`, `search` (`domain` is read
as a one-entry search list, as glibc does when no `search` follows), and `options`. Comments
(`#`, `;`) and unknown lines are skipped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [f"nameserver {ns}" for ns in self.nameservers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse(text: str) -> ResolvConf:
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].split()
        if len(line) < 2:
            continue
        key, values = line[0], line[1:]
        if key == "nameserver" and _address(values[0]):
            nameservers.append(values[0])
        elif key == "search":
            searches = values
        elif key == "domain":
            searches = values[:1]
        elif key == "options":
            options.extend(values)
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def _address(value: str) -> bool:
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    return True
