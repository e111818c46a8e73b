"""A pod's names and resolver settings: hostname, subdomain, dnsConfig, hostAliases.

Kubernetes' rules (validatePodDNSConfig, validateHostAliases): with dnsPolicy None the pod
must bring its own dnsConfig with at least one nameserver; at most 3 nameservers (IP
addresses), at most 32 search domains and 2048 characters of them; every option has a name;
host aliases pair an IP address with DNS names.
"""

from __future__ import annotations

import ipaddress

from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048


def pod_dns(found: Findings, spec: objects_pb2.PodSpec, path: str) -> None:
    if spec.hostname:
        for error in names.dns1123_label(spec.hostname):
            found.invalid(f"{path}.hostname", spec.hostname, error)
    if spec.subdomain:
        for error in names.dns1123_label(spec.subdomain):
            found.invalid(f"{path}.subdomain", spec.subdomain, error)
    config = spec.dns_config
    where = f"{path}.dnsConfig"
    if spec.dns_policy == "None":
        if not spec.HasField("dns_config"):
            found.required(where, "must provide `dnsConfig` when `dnsPolicy` is None")
        elif not config.nameservers:
            found.required(
                f"{where}.nameservers",
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )
    if len(config.nameservers) > MAX_NAMESERVERS:
        found.invalid(
            f"{where}.nameservers",
            ",".join(config.nameservers),
            f"must not have more than {MAX_NAMESERVERS} nameservers",
        )
    for i, server in enumerate(config.nameservers):
        if not _is_ip(server):
            found.invalid(f"{where}.nameservers[{i}]", server, "must be a valid IP address")
    if len(config.searches) > MAX_SEARCHES:
        found.invalid(
            f"{where}.searches",
            ",".join(config.searches),
            f"must not have more than {MAX_SEARCHES} search paths",
        )
    if len(" ".join(config.searches)) > MAX_SEARCH_CHARS:
        found.invalid(
            f"{where}.searches",
            " ".join(config.searches),
            f"must not have more than {MAX_SEARCH_CHARS} characters (including spaces)",
        )
    for i, search in enumerate(config.searches):
        for error in names.dns1123_subdomain(search.rstrip(".")):
            found.invalid(f"{where}.searches[{i}]", search, error)
    for i, option in enumerate(config.options):
        if not option.name:
            found.required(f"{where}.options[{i}].name")
    for i, alias in enumerate(spec.host_aliases):
        at = f"{path}.hostAliases[{i}]"
        if not _is_ip(alias.ip):
            found.invalid(f"{at}.ip", alias.ip, "must be a valid IP address")
        for j, hostname in enumerate(alias.hostnames):
            for error in names.dns1123_subdomain(hostname):
                found.invalid(f"{at}.hostnames[{j}]", hostname, error)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
