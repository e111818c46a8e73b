"""The local registry as `up` configures it (issue 11, item 9): no anonymous push, delete or
pull; the account `up` writes into every registries.yaml can push; the files holding the
password are 0600; it listens only on the address it was given."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pilothouse.cli.cluster import registry as local_registry
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.oci.registry import Unauthorized, push_archive

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None and not Path("/usr/bin/docker-registry").exists(),
    reason="docker-registry is not installed",
)


@contextlib.contextmanager
def running(directory: Path) -> Iterator[str]:
    """The registry as `up` runs it, on loopback; its address."""
    log = directory / "registry.log"
    spec = local_registry.child(directory, listen="127.0.0.1:0", log_path=log)
    with log.open("ab") as out:
        process = subprocess.Popen(spec.argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        address = None
        while address is None:
            assert process.poll() is None, f"the registry exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the registry never listened:\n{log.read_text()}"
            address = local_registry.bound_address(log, offset=0)
            time.sleep(0.05)
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def anonymous(address: str, method: str, path: str) -> int:
    connection = http.client.HTTPConnection(address, timeout=10)
    try:
        connection.request(method, path, headers={"Content-Length": "0"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_local_registry_refuses_anonymous_push_delete_and_pull(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    archive = tmp_path / "busybox.tar"
    with running(directory) as address:
        assert address.startswith("127.0.0.1:"), f"the registry listens on {address}"
        # The account `up` writes for nodes, the control plane and the CLI pushes the image.
        account = local_registry.credentials(directory)
        digest = asyncio.run(
            local_registry.push_test_image(archive, registry_address=address, account=account)
        )
        assert digest.startswith("sha256:")

        # Anyone else: no push (a blob upload, a manifest), no delete, no read.
        for method, path in (
            ("POST", "/v2/library/evil/blobs/uploads/"),
            ("PUT", "/v2/library/busybox/manifests/stable"),
            ("DELETE", f"/v2/library/busybox/manifests/{digest}"),
            ("GET", "/v2/_catalog"),
            ("GET", "/v2/library/busybox/manifests/stable"),
        ):
            status = anonymous(address, method, path)
            assert status == 401, f"anonymous {method} {path} answered {status}, not 401"
        config = RegistriesConfig.from_dict({"configs": {address: {"insecure": True}}})
        with pytest.raises(Unauthorized, match="authentication required"):
            asyncio.run(push_archive(archive, f"{address}/library/evil:1", config=config))
        # A wrong password is refused as well.
        wrong = RegistriesConfig.from_dict(
            {"configs": {address: {"insecure": True, "auth": {"username": "pilothouse",
                                                                "password": "guess"}}}}
        )  # fmt: skip
        with pytest.raises(Unauthorized):
            asyncio.run(push_archive(archive, f"{address}/library/evil:1", config=wrong))

    # The password is only in files its owner can read.
    mirrors = local_registry.write_mirrors(
        tmp_path / "registries.yaml", registry_address=address, account=account
    )
    for secret in (directory / "auth.yaml", directory / "htpasswd", mirrors):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, f"{secret} is readable by others"
    assert yaml.safe_load(mirrors.read_text())["configs"][address]["auth"] == account.auth()
    assert account.password not in (directory / "htpasswd").read_text(), "htpasswd holds it clear"
    assert local_registry.credentials(directory) == account, "the account changed on reuse"
