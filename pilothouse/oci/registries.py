"""Which endpoints serve a registry, with which credentials and TLS: k3s's registries.yaml.

```yaml
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000"]     # tried in order, then the registry itself
configs:
  "127.0.0.1:5000":                          # keyed by endpoint host (or registry name)
    auth: {username: u, password: p}        # or auth: "base64(u:p)", or identity_token
    tls: {insecure_skip_verify: false, ca_file: /path/ca.pem}
    insecure: true                           # our extension: allow plain http to this host
disableDefaultEndpoint: false                # our extension: never fall back to the registry
```

Invariants:
- https unless the endpoint host is loopback (127.0.0.0/8, ::1, localhost, where Docker too
  treats registries as insecure) or the host is configured `insecure: true`; an `http://`
  mirror endpoint for any other host is refused with an error that says how to allow it.
- A mirror for "*" applies to every registry without a mirror of its own.
- The registry's own endpoint comes last (Docker Hub's is registry-1.docker.io), unless
  `disableDefaultEndpoint` is set.
"""

from __future__ import annotations

import base64
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pilothouse.oci import OCIError

DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io"


class ConfigError(OCIError):
    """The registries config is malformed or asks for something unsafe."""


@dataclass(frozen=True, slots=True)
class HostConfig:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    insecure_skip_verify: bool = False
    ca_file: str = ""
    insecure: bool = False  # plain http allowed


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One base URL serving a registry's /v2/ API, with what it takes to talk to it."""

    url: str  # "https://registry-1.docker.io", "http://127.0.0.1:5000"
    host: str  # "127.0.0.1:5000"
    config: HostConfig = field(default_factory=HostConfig)

    @property
    def secure(self) -> bool:
        return self.url.startswith("https://")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.secure:
            return None
        ctx = ssl.create_default_context(cafile=self.config.ca_file or None)
        if self.config.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def is_loopback(host: str) -> bool:
    """True for "127.0.0.1:5000", "[::1]:5000", "localhost" …"""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_config(data: Any, *, where: str) -> HostConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping")
    auth = data.get("auth") or {}
    tls = data.get("tls") or {}
    username = password = token = ""
    if isinstance(auth, str):
        try:
            username, _, password = base64.b64decode(auth).decode().partition(":")
        except ValueError as exc:
            raise ConfigError(f"{where}.auth is not base64 of user:password") from exc
    elif isinstance(auth, dict):
        username = str(auth.get("username") or "")
        password = str(auth.get("password") or "")
        token = str(auth.get("identity_token") or "")
        if auth.get("auth"):
            username, _, password = base64.b64decode(str(auth["auth"])).decode().partition(":")
    else:
        raise ConfigError(f"{where}.auth must be a mapping")
    if not isinstance(tls, dict):
        raise ConfigError(f"{where}.tls must be a mapping")
    return HostConfig(
        username=username,
        password=password,
        identity_token=token,
        insecure_skip_verify=bool(tls.get("insecure_skip_verify", False)),
        ca_file=str(tls.get("ca_file") or ""),
        insecure=bool(data.get("insecure", False)),
    )


@dataclass(frozen=True, slots=True)
class RegistriesConfig:
    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    configs: dict[str, HostConfig] = field(default_factory=dict)
    default_endpoint: bool = True

    @classmethod
    def load(cls, path: Path | str) -> RegistriesConfig:
        """Read a registries.yaml; a missing file means no mirrors and no credentials."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Any) -> RegistriesConfig:
        if not isinstance(data, dict):
            raise ConfigError("registries config must be a mapping")
        unknown = set(data) - {"mirrors", "configs", "disableDefaultEndpoint"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} (mirrors, configs)")
        mirrors: dict[str, tuple[str, ...]] = {}
        for name, mirror in (data.get("mirrors") or {}).items():
            if not isinstance(mirror, dict) or not isinstance(mirror.get("endpoint", []), list):
                raise ConfigError(f"mirrors.{name}.endpoint must be a list of URLs")
            urls = tuple(str(u).rstrip("/") for u in mirror.get("endpoint", []))
            for url in urls:
                if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                    raise ConfigError(f"mirrors.{name}.endpoint {url!r} is not an http(s) URL")
            mirrors[str(name)] = urls
        configs = {
            str(host): _host_config(conf, where=f"configs.{host}")
            for host, conf in (data.get("configs") or {}).items()
        }
        config = cls(
            mirrors=mirrors,
            configs=configs,
            default_endpoint=not bool(data.get("disableDefaultEndpoint", False)),
        )
        for urls in mirrors.values():
            for url in urls:
                config._endpoint(url, registry="")  # refuses unsafe http now, not at pull time
        return config

    def host_config(self, host: str, *, registry: str = "") -> HostConfig:
        return self.configs.get(host) or self.configs.get(registry) or HostConfig()

    def _endpoint(self, url: str, *, registry: str) -> Endpoint:
        host = urlsplit(url).netloc
        config = self.host_config(host, registry=registry)
        if url.startswith("http://") and not (is_loopback(host) or config.insecure):
            raise ConfigError(
                f"endpoint {url}: plain http is allowed only for loopback addresses or hosts "
                f"marked insecure (configs: {{{host!r}: {{insecure: true}}}})"
            )
        return Endpoint(url=url, host=host, config=config)

    def endpoints(self, registry: str) -> list[Endpoint]:
        """Where to ask for images of `registry`, in order: mirrors, then the registry."""
        urls = list(self.mirrors.get(registry, self.mirrors.get("*", ())))
        if self.default_endpoint or not urls:
            if registry == "docker.io":
                default = DOCKER_HUB_ENDPOINT
            else:
                insecure = is_loopback(registry) or self.host_config(registry).insecure
                default = f"{'http' if insecure else 'https'}://{registry}"
            if default not in urls:
                urls.append(default)
        return [self._endpoint(url, registry=registry) for url in urls]
