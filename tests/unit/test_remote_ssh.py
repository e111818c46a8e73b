"""`pilothouse node add`'s SSH side against an in-process SSH server (asyncssh) on loopback:
host keys verified as OpenSSH does (unknown refused unless --accept-new, which records it; a
changed key refused either way), a refused key and a closed port each one line; commands run
and files written through SFTP land with their mode. And the host checks' one-line verdict.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse.cli.remote import checks, ssh
from pilothouse.cli.remote.install import settings_file
from pilothouse.cli.remote.roles import Role

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import asyncssh


class _Server(asyncssh.SSHServer):
    def __init__(self, allowed: asyncssh.SSHKey) -> None:
        self.allowed = allowed

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data == self.allowed.public_data


async def _shell(process: asyncssh.SSHServerProcess) -> None:
    """Answer `id -u` with 0 and echo anything else's command line (enough for these tests)."""
    command = process.command or ""
    process.stdout.write("0\n" if command == "id -u" else f"ran: {command}\n")
    process.exit(0)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[ssh.Target, asyncssh.SSHKey, Path]]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(client_key.export_private_key())
    key_file.chmod(0o600)
    listener = await asyncssh.create_server(
        lambda: _Server(client_key),
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        process_factory=_shell,
        sftp_factory=True,
    )
    port = listener.sockets[0].getsockname()[1]
    try:
        yield ssh.Target(user="root", host="127.0.0.1", port=port), host_key, key_file
    finally:
        listener.close()
        await listener.wait_closed()


def _known(path: Path, target: ssh.Target, key: asyncssh.SSHKey) -> Path:
    public = key.export_public_key().decode().strip()
    path.write_text(f"[{target.host}]:{target.port} {public}\n")
    return path


async def test_host_keys_are_verified_as_openssh_does(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target, _, key_file = server
    hosts = tmp_path / "known_hosts"
    with pytest.raises(ssh.SshError, match=r"is not in .* pass --accept-new"):
        await ssh.connect(target, key=key_file, known_hosts=hosts)
    async with await ssh.connect(target, key=key_file, known_hosts=hosts, accept_new=True) as h:
        assert (await h.run("id -u")).stdout.strip() == "0"
    assert f"[127.0.0.1]:{target.port} ssh-ed25519" in hosts.read_text(), "key not recorded"
    async with await ssh.connect(target, key=key_file, known_hosts=hosts) as h:
        pass  # the recorded key is trusted from now on
    other = asyncssh.generate_private_key("ssh-ed25519")
    changed = _known(tmp_path / "changed", target, other)
    for accept_new in (False, True):
        with pytest.raises(ssh.SshError, match="has CHANGED") as refused:
            await ssh.connect(target, key=key_file, known_hosts=changed, accept_new=accept_new)
        assert "\n" not in str(refused.value)


async def test_a_refused_key_and_a_closed_port_are_one_line_each(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target, host_key, _ = server
    hosts = _known(tmp_path / "known_hosts", target, host_key)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    wrong.chmod(0o600)
    with pytest.raises(ssh.SshError, match=r"refused the key .*permission denied"):
        await ssh.connect(target, key=wrong, known_hosts=hosts)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(ssh.SshError, match="refused the SSH connection: is sshd running"):
            await ssh.connect(ssh.Target("root", "127.0.0.1", closed), key=wrong, known_hosts=hosts)


async def test_commands_run_and_elevate_sees_root(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target, host_key, key_file = server
    hosts = _known(tmp_path / "known_hosts", target, host_key)
    async with await ssh.connect(target, key=key_file, known_hosts=hosts) as host:
        assert await host.elevate()
        assert (await host.run("echo hi")).stdout == "ran: echo hi\n"


def test_targets_parse() -> None:
    assert ssh.Target.parse("admin@10.0.0.5:2222") == ssh.Target("admin", "10.0.0.5", 2222)
    assert ssh.Target.parse("10.0.0.5") == ssh.Target("root", "10.0.0.5", 22)
    assert str(ssh.Target.parse("root@h")) == "root@h"
    with pytest.raises(ValueError):
        ssh.Target.parse("@h")


def _facts(**changes: object) -> checks.Facts:
    facts = dict(
        os="debian", version="12", pretty="Debian GNU/Linux 12 (bookworm)", cgroupfs="cgroup2fs",
        controllers=frozenset({"cpu", "memory", "pids", "io"}), overlay=True, systemd=True,
        machine="", kernel="6.1.0", python="", root=True,
    )  # fmt: skip
    facts.update(changes)
    return checks.Facts(**facts)  # type: ignore[arg-type]


def test_the_host_check_names_everything_missing_at_once() -> None:
    assert checks.missing(_facts(), Role.AGENT, user="root") == []
    found = checks.missing(
        _facts(
            os="alpine", version="3.20", pretty="Alpine Linux v3.20",
            controllers=frozenset({"cpu", "pids"}), overlay=False, root=False,
        ),
        Role.AGENT,
        user="ops",
    )  # fmt: skip
    assert found == [
        "ops is not root and has no passwordless sudo",
        "not Debian 12 (found Alpine Linux v3.20)",
        "cgroup v2 controller memory not enabled",
        "no overlayfs (modprobe overlay failed)",
    ]
    assert checks.missing(_facts(cgroupfs="tmpfs"), Role.AGENT, user="root") == [
        "no cgroup v2 at /sys/fs/cgroup (found tmpfs)"
    ]
    # A control plane runs no containers: no overlayfs or controllers needed.
    assert checks.missing(_facts(overlay=False, controllers=frozenset()), Role.CONTROLPLANE,
                          user="root") == []  # fmt: skip
    parsed = checks.parse("os=debian\nversion=12\ncontrollers=cpu memory\noverlay=yes\n", root=True)
    assert parsed.controllers == {"cpu", "memory"} and parsed.overlay


def test_the_settings_file_refuses_words_systemd_would_split() -> None:
    text = settings_file(Role.AGENT, ["--name", "vm-1", "--node-ip", "10.0.0.5"]).decode()
    assert text.splitlines()[-1] == "PILOTHOUSE_AGENT_ARGS=--name vm-1 --node-ip 10.0.0.5"
    with pytest.raises(ValueError, match="no spaces"):
        settings_file(Role.AGENT, ["--name", "two words"])
