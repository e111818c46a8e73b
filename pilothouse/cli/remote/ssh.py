"""One SSH connection to a host (asyncssh), with host keys verified as OpenSSH verifies them.

Host keys: the host's key must be in `known_hosts` (default ~/.ssh/known_hosts); with
`accept_new`, a host that has no entry there yet is trusted on first use and its key appended
(OpenSSH's StrictHostKeyChecking=accept-new), but a host whose key differs from a recorded one
is refused either way. Every failure to connect is an `SshError` with one line that says what
happened and what to do: refused, unreachable, an unknown or changed host key, a refused key.

`Host.run` runs a command (as root: prefixed with `sudo -n` when the user is not root and
`elevate()` found passwordless sudo); `Host.put` writes a file through SFTP into a private
temporary directory and installs it with its mode, so file contents (a join token) never
appear on a command line.
"""

from __future__ import annotations

import asyncio
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # asyncssh's import warns about DSA in cryptography
    import asyncssh

CONNECT_TIMEOUT = 30.0
COMMAND_TIMEOUT = 1800.0


class SshError(Exception):
    """Connecting or running a command failed; the message is one line for a person."""


@dataclass(frozen=True, slots=True)
class Target:
    user: str
    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str) -> Target:
        """`USER@HOST[:PORT]` (USER defaults to root)."""
        user, at, rest = text.rpartition("@")
        host, port = rest, 22
        if rest.count(":") == 1:
            host, _, given = rest.partition(":")
            if not given.isdigit():
                raise ValueError(f"{text!r}: the port after ':' must be a number")
            port = int(given)
        if not host or (at and not user):
            raise ValueError(f"{text!r} is not USER@HOST[:PORT]")
        return cls(user=user or "root", host=host, port=port)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.user}@{self.host}{port}"


@dataclass(frozen=True, slots=True)
class Result:
    exit_status: int
    stdout: str
    stderr: str


class _Verifier(asyncssh.SSHClient):
    """Decides on a key known_hosts does not hold: accept it only for a host with no entry."""

    def __init__(self, *, has_entry: bool, accept_new: bool) -> None:
        self.has_entry = has_entry
        self.accept_new = accept_new
        self.presented: asyncssh.SSHKey | None = None
        self.accepted: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.presented = key
        if self.accept_new and not self.has_entry:
            self.accepted = key
            return True
        return False


def _has_entry(known_hosts: Path, target: Target) -> bool:
    if not known_hosts.exists():
        return False
    names = [target.host] if target.port == 22 else [f"[{target.host}]:{target.port}"]
    matched = asyncssh.read_known_hosts(str(known_hosts)).match(names[0], target.host, target.port)
    return any(matched[:3])


class Host:
    """A connected host; use as an async context manager (`connect`)."""

    def __init__(self, target: Target, connection: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self._connection = connection
        self._sudo = ""  # "sudo -n " once elevate() found the user is not root

    async def close(self) -> None:
        self._connection.close()
        await self._connection.wait_closed()

    async def __aenter__(self) -> Host:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def elevate(self) -> bool:
        """Run later commands as root: True if the user is root or has passwordless sudo."""
        who = await self.run("id -u", check=False, as_root=False)
        if who.stdout.strip() == "0":
            return True
        probe = await self.run("sudo -n true", check=False, as_root=False)
        if probe.exit_status == 0:
            self._sudo = "sudo -n "
            return True
        return False

    async def run(
        self,
        command: str,
        *,
        check: bool = True,
        as_root: bool = True,
        stdin: str | None = None,
        limit: float = COMMAND_TIMEOUT,
    ) -> Result:
        """Run `command` (a shell line) on the host; SshError if it fails and `check`."""
        line = f"{self._sudo}sh -c {shlex.quote(command)}" if as_root and self._sudo else command
        try:
            async with asyncio.timeout(limit):
                done = await self._connection.run(line, input=stdin, check=False)
        except TimeoutError:
            raise SshError(f"{self.target}: `{command[:60]}` took over {limit:.0f} s") from None
        except (OSError, asyncssh.Error) as error:
            raise SshError(f"{self.target}: lost the connection ({_reason(error)})") from None
        result = Result(
            exit_status=done.exit_status if done.exit_status is not None else 255,
            stdout=str(done.stdout or ""),
            stderr=str(done.stderr or ""),
        )
        if check and result.exit_status != 0:
            said = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise SshError(
                f"`{command[:80]}` failed (exit {result.exit_status})"
                + (f": {said[-1]}" if said else "")
            )
        return result

    async def put(self, path: str, data: bytes, *, mode: int) -> None:
        """Write `data` to `path` (as root) with `mode`, via a private temporary directory."""
        await self.put_many({path: (data, mode)})

    async def put_many(self, files: dict[str, tuple[bytes, int]]) -> None:
        """Write each path's data with its mode (as root): one SFTP session into a private
        temporary directory, then one `install` per file in one command."""
        if not files:
            return
        tmp = (await self.run("mktemp -d", as_root=False)).stdout.strip()
        try:
            private = asyncssh.SFTPAttrs(permissions=0o600)
            moves = []
            async with self._connection.start_sftp_client() as sftp:
                for index, (path, (data, mode)) in enumerate(files.items()):
                    async with sftp.open(f"{tmp}/{index}", "wb", private) as handle:
                        await handle.write(data)
                    directory = shlex.quote(str(Path(path).parent))
                    moves.append(
                        f"mkdir -p {directory} && install -m {mode:o} -o root -g root "
                        f"{shlex.quote(tmp)}/{index} {shlex.quote(path)}"
                    )
            await self.run(" && ".join(moves))
        finally:
            await self.run(f"rm -rf {shlex.quote(tmp)}", check=False, as_root=False)


async def connect(
    target: Target,
    *,
    key: Path | None = None,
    known_hosts: Path | None = None,
    accept_new: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Host:
    """Connect to `target` with `key` (default: the user's SSH keys and agent) and verify its
    host key (see the module docstring)."""
    hosts_file = known_hosts or Path.home() / ".ssh" / "known_hosts"
    has_entry = _has_entry(hosts_file, target)
    verifier = _Verifier(has_entry=has_entry, accept_new=accept_new)
    options: dict[str, object] = {
        "username": target.user,
        "known_hosts": str(hosts_file) if hosts_file.exists() else (),
        "client_factory": lambda: verifier,
        "connect_timeout": connect_timeout,
    }
    if key is not None:
        options["client_keys"] = [str(key)]
        options["agent_path"] = None
    try:
        connection = await asyncssh.connect(target.host, target.port, **options)
    except asyncssh.HostKeyNotVerifiable:
        raise SshError(_host_key_message(target, hosts_file, has_entry, verifier)) from None
    except asyncssh.PermissionDenied:
        which = f"the key {key}" if key else "your SSH keys"
        raise SshError(
            f"{target} refused {which} (permission denied): add its public key to "
            f"~{target.user}/.ssh/authorized_keys there, or pass --ssh-key"
        ) from None
    except ConnectionRefusedError:
        raise SshError(
            f"{target.host}:{target.port} refused the SSH connection: is sshd running there?"
        ) from None
    except TimeoutError:
        raise SshError(
            f"{target.host}:{target.port} did not answer within {connect_timeout:.0f} s"
        ) from None
    except (OSError, asyncssh.Error) as error:
        raise SshError(f"cannot reach {target.host}:{target.port}: {_reason(error)}") from None
    if verifier.accepted is not None:
        _remember(hosts_file, target, verifier.accepted)
    return Host(target, connection)


def _host_key_message(
    target: Target, hosts_file: Path, has_entry: bool, verifier: _Verifier
) -> str:
    presented = verifier.presented
    fingerprint = presented.get_fingerprint() if presented is not None else "unknown"
    if has_entry:
        return (
            f"the host key of {target.host} has CHANGED ({fingerprint} is not the key "
            f"{hosts_file} holds): another machine may answer at this address; if the host "
            f"was reinstalled, remove the old key (ssh-keygen -R {target.host}) and try again"
        )
    return (
        f"{target.host} is not in {hosts_file} (its key is {fingerprint}): add it "
        "(ssh-keyscan, or ssh once) or pass --accept-new to trust it on first use"
    )


def _remember(hosts_file: Path, target: Target, key: asyncssh.SSHKey) -> None:
    name = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    hosts_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = f"{name} {key.export_public_key().decode().strip()}\n"
    with hosts_file.open("a") as handle:
        handle.write(line)


def _reason(error: BaseException) -> str:
    text = getattr(error, "reason", "") or getattr(error, "strerror", "") or str(error)
    return str(text).strip() or type(error).__name__
