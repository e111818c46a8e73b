"""SSH keys for a lab, and each machine's seed: the files it gets at boot through QEMU's fw_cfg.

Invariants: private keys are written 0600 in the lab's directory and nowhere else; a machine's
host key is made once, on the host, so the lab knows it before the machine boots and writes
`known_hosts` itself (nobody has to trust a key on first use); the seed is a tar archive owned
by root, unpacked at `/` by the image's seed unit (`guest`), and handed over again on every
boot, so a machine keeps its host key across reboots.
"""

from __future__ import annotations

import io
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # asyncssh's import warns about DSA in cryptography
    import asyncssh


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An OpenSSH key pair on disk: `private` (0600) and `public` ("ssh-ed25519 AAAA… comment")."""

    private: Path
    public: str


def client_key(directory: Path, *, comment: str = "pilothouse-vm-lab") -> KeyPair:
    """The lab's client key (id_ed25519 in `directory`), made once."""
    private = directory / "id_ed25519"
    if not private.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
        private.touch(mode=0o600)
        private.write_bytes(key.export_private_key())
        (directory / "id_ed25519.pub").write_bytes(key.export_public_key())
    public = (directory / "id_ed25519.pub").read_text().strip()
    return KeyPair(private=private, public=public)


def host_key(directory: Path, name: str) -> KeyPair:
    """Machine `name`'s SSH host key (made once, kept in `directory`)."""
    private = directory / f"{name}.host_ed25519_key"
    if not private.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"root@{name}")
        private.touch(mode=0o600)
        private.write_bytes(key.export_private_key())
        private.with_suffix(".pub").write_bytes(key.export_public_key())
    public = private.with_suffix(".pub").read_text().strip()
    return KeyPair(private=private, public=public)


def known_hosts_line(address: str, host: KeyPair) -> str:
    """A known_hosts line for `address` with the machine's host key (without its comment)."""
    kind, blob = host.public.split()[:2]
    return f"{address} {kind} {blob}"


def write_seed(
    path: Path, *, host: KeyPair, authorized_keys: str, extra: dict[str, bytes] | None = None
) -> Path:
    """The seed archive for one machine: its host key, root's authorized keys, and `extra`
    files (path relative to / -> content, 0644)."""
    files = [
        ("etc/ssh/ssh_host_ed25519_key", 0o600, host.private.read_bytes()),
        ("etc/ssh/ssh_host_ed25519_key.pub", 0o644, (host.public + "\n").encode()),
        ("root/.ssh/authorized_keys", 0o600, authorized_keys.encode()),
        *((name, 0o644, data) for name, data in (extra or {}).items()),
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        directory = tarfile.TarInfo("root/.ssh")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o700
        archive.addfile(directory)
        for name, mode, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    path.touch(mode=0o600)
    path.write_bytes(buffer.getvalue())
    return path
