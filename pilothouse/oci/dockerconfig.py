"""Registry credentials from a pod's imagePullSecrets (Docker's config formats), for one pull.

A `kubernetes.io/dockerconfigjson` Secret holds `.dockerconfigjson`:
`{"auths": {"<host>": {"auth": base64("user:password")}}}` (or "username"/"password" in
place of "auth"); a `kubernetes.io/dockercfg` Secret holds `.dockercfg`, the same map without
the "auths" level. Hosts are written as the docker CLI writes them (`https://index.docker.io/v1/`
for Docker Hub, `registry.example.com`, `https://registry.example.com/v2/`): `credentials`
reduces each to the registry host the node's RegistriesConfig uses (`docker.io`, …).

`with_credentials(config, found)` is the node's registries config with those credentials for
their hosts (a pod's secret wins over the node's own for its pulls; TLS settings stay).

Invariant: nothing here logs or quotes a credential; a malformed secret yields no entry.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pilothouse.oci.registries import HostConfig, RegistriesConfig

DOCKER_HUB = "docker.io"
_HUB_NAMES = {"index.docker.io", "registry-1.docker.io", "docker.io"}


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:  # never show the password
        return f"Credentials(username={self.username!r})"


def credentials(data: bytes, *, legacy: bool = False) -> dict[str, Credentials]:
    """The credentials of a `.dockerconfigjson` (or, `legacy`, a `.dockercfg`) payload."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    entries = parsed if legacy else (parsed.get("auths") if isinstance(parsed, dict) else None)
    if not isinstance(entries, dict):
        return {}
    out: dict[str, Credentials] = {}
    for host, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(host, str):
            continue
        found = _entry(entry)
        if found is not None:
            out[registry_host(host)] = found
    return out


def _entry(entry: Mapping[str, object]) -> Credentials | None:
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, _, password = base64.b64decode(auth).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
    token = str(entry.get("identitytoken") or "")
    if not username and not token:
        return None
    return Credentials(username=username, password=password, identity_token=token)


def registry_host(key: str) -> str:
    """ "https://index.docker.io/v1/" -> "docker.io"; "https://r.example:5000/v2/" -> host."""
    host = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    return DOCKER_HUB if host in _HUB_NAMES else host


def with_credentials(
    config: RegistriesConfig, found: Mapping[str, Credentials]
) -> RegistriesConfig:
    """`config` with `found` as the credentials of their hosts (and of Docker Hub's mirrors'
    own host names when the key is docker.io)."""
    if not found:
        return config
    configs = dict(config.configs)
    for host, creds in found.items():
        for name in (host, *((_HUB_NAMES - {host}) if host == DOCKER_HUB else ())):
            base = configs.get(name, HostConfig())
            configs[name] = dataclasses.replace(
                base,
                username=creds.username,
                password=creds.password,
                identity_token=creds.identity_token,
            )
    return dataclasses.replace(config, configs=configs)
