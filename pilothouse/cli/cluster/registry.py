"""The local cluster's OCI registry: Debian's `docker-registry`, and the test image in it.

The registry serves plain http on the address `up` gives it (loopback, or the node bridge's
address so nodes in their own network namespaces reach it; that host is marked `insecure` in
the nodes' registries.yaml and for the push, since only loopback is plain http by default).
Its first run binds port 0 and its log tells the port it got ("listening on HOST:PORT"); the
config is then rewritten with that port, so every later run (after a crash) serves on the
same address the nodes' mirrors name.

Nodes reach it through a registries.yaml that mirrors `docker.io` to it, so manifests say
`busybox:stable` and pull `library/busybox:stable` from here, offline. The same image is also
tagged `busybox:latest` (as on Docker Hub, where both name the current stable busybox), so a
walkthrough can `set image` to another tag and roll out without the internet.

Credentials (issue 11): the registry requires HTTP basic auth for everything (htpasswd with a
bcrypt hash, distribution's `auth.htpasswd`), pull included, so no local user can push, delete
or read images without them. One account (`pilothouse`, a random password made once per data
dir and kept in `<data-dir>/registry/auth.yaml`, 0600) is written, with the mirror, into every
registries.yaml `up` writes (0600): the agents', the control plane's (digests) and the CLI's
(`<data-dir>/registry/registries.yaml`, for `pilothouse build --registries …` and
`pilothouse image push --registries …`). docker-registry's htpasswd has no read-only users, so
nodes hold the same account: a node's root can push, as it can run anything on that node.
It listens only on the address nodes reach it at (`service_host`: loopback, or the nodes'
bridge), never on every interface.

Invariant: storage lives under `<data-dir>/registry/storage`, nowhere else.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml

from pilothouse import pki
from pilothouse.cli.cluster import probes
from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.oci.registry import push_archive
from pilothouse.oci.testimage import build_test_image

REGISTRY_BIN = "docker-registry"
TEST_IMAGE = "busybox:stable"
TEST_IMAGE_PATH = "library/busybox:stable"  # where docker.io's `busybox:stable` lives
EXTRA_TAGS = ("latest",)  # further tags of the same image in library/busybox
_LISTENING = re.compile(r"listening on (\d+\.\d+\.\d+\.\d+:\d+)")


class RegistryMissing(RuntimeError):
    """docker-registry is not installed."""


def binary() -> str:
    found = shutil.which(REGISTRY_BIN) or (
        "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None
    )
    if found is None:
        raise RegistryMissing(
            "docker-registry is not installed; install it with `apt-get install docker-registry`"
        )
    return found


USERNAME = "pilothouse"
REALM = "pilothouse-local-registry"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The registry's one account (see the module docstring)."""

    username: str
    password: str

    def auth(self) -> dict[str, str]:
        """registries.yaml's `configs.<host>.auth`."""
        return {"username": self.username, "password": self.password}


def credentials(directory: Path) -> Credentials:
    """The account of the registry in `directory`: made once (random password, bcrypt
    htpasswd), then read back."""
    saved = directory / "auth.yaml"
    try:
        data = yaml.safe_load(saved.read_text()) or {}
        found = Credentials(username=str(data["username"]), password=str(data["password"]))
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        found = None
    if found is not None and (directory / "htpasswd").exists():
        return found
    made = Credentials(username=USERNAME, password=secrets.token_urlsafe(24))
    hashed = bcrypt.hashpw(made.password.encode(), bcrypt.gensalt(rounds=10)).decode()
    directory.mkdir(parents=True, exist_ok=True)
    pki.write_secret(directory / "htpasswd", f"{made.username}:{hashed}\n".encode())
    pki.write_secret(saved, yaml.safe_dump(made.auth(), sort_keys=False).encode())
    return made


def write_config(directory: Path, *, listen: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "storage").mkdir(exist_ok=True)
    credentials(directory)  # the htpasswd file the config names
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "storage")},
            "delete": {"enabled": True},
        },
        "http": {"addr": listen},
        "auth": {"htpasswd": {"realm": REALM, "path": str(directory / "htpasswd")}},
    }
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def child(directory: Path, *, listen: str, log_path: Path) -> ChildSpec:
    """The registry as a supervised child; `listen` "HOST:0" the first time."""
    config = write_config(directory, listen=listen)
    return ChildSpec(
        name="registry",
        argv=(binary(), "serve", str(config)),
        log_path=log_path,
        stop_timeout=5.0,
    )


async def start(supervisor: Supervisor, directory: Path, *, listen: str, log_path: Path) -> str:
    """Start the registry under `supervisor` and wait until it serves: the address it got,
    now fixed in its config so a restart serves on the same one."""
    offset = _size(log_path)
    await supervisor.start(child(directory, listen=listen, log_path=log_path))
    address = ""

    async def listening() -> bool:
        nonlocal address
        address = bound_address(log_path, offset=offset) or ""
        return bool(address) and await probes.registry_serves(address)

    await probes.wait_until(
        listening,
        what=f"the registry (log: {log_path})",
        deadline_s=probes.READY_TIMEOUT_S,
        alive=lambda: supervisor.pid("registry") is not None,
    )
    write_config(directory, listen=address)  # keep it on restarts
    return address


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def bound_address(log_path: Path, *, offset: int) -> str | None:
    """The address the registry said it listens on, in its log after `offset`."""
    try:
        with log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    found = _LISTENING.findall(text)
    return found[-1] if found else None


def mirrors(registry_address: str, account: Credentials | None = None) -> dict[str, object]:
    """The registries.yaml content that mirrors docker.io to the local registry ("HOST:PORT"),
    which serves plain http, with the registry's account."""
    config: dict[str, object] = {"insecure": True}
    if account is not None:
        config["auth"] = account.auth()
    return {
        "mirrors": {"docker.io": {"endpoint": [f"http://{registry_address}"]}},
        "configs": {registry_address: config},
    }


def write_mirrors(path: Path, *, registry_address: str, account: Credentials | None = None) -> Path:
    """Write a registries.yaml (0600: it holds the registry's password)."""
    text = yaml.safe_dump(mirrors(registry_address, account), sort_keys=False)
    pki.write_secret(path, text.encode())
    return path


async def push_test_image(
    archive: Path, *, registry_address: str, account: Credentials | None = None
) -> str:
    """Build the busybox test image (once per data dir) and push it under `TEST_IMAGE_PATH` and
    each of `EXTRA_TAGS`; returns its digest."""
    await asyncio.to_thread(_build_once, archive)
    host: dict[str, object] = {"insecure": True}
    if account is not None:
        host["auth"] = account.auth()
    config = RegistriesConfig.from_dict({"configs": {registry_address: host}})
    digest = await push_archive(archive, f"{registry_address}/{TEST_IMAGE_PATH}", config=config)
    repository = TEST_IMAGE_PATH.rsplit(":", 1)[0]
    for tag in EXTRA_TAGS:
        await push_archive(archive, f"{registry_address}/{repository}:{tag}", config=config)
    return digest


def _build_once(archive: Path) -> None:
    if not archive.exists():
        build_test_image(archive, tag=TEST_IMAGE)
