"""Putting a role on a connected host, step by step; each step changes only what differs.

Steps, in order (`Installation`): check the host (`checks`; a refusal changes nothing),
install the Debian packages it lacks (with the host's own apt, only when some are missing),
copy the wheels that differ into /opt/pilothouse/wheels, install them into the virtualenv
(only when the set changed: `roles.INSTALLED_MARK`), write files (settings, unit, extras)
only when their content differs, reload systemd when the unit changed, enable the unit and
(re)start it only when something it runs on changed or it is not active.

Invariants:
- the first change to the host comes after the check passed, so a refused host keeps nothing;
- every step says what it changed (`Installation.changed`), and a failure names the step, what
  was done before it, and that running again is safe (every step is idempotent);
- secrets (the join token) travel in SFTP writes to 0600 files, never on a command line.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pilothouse.cli.remote import checks, roles
from pilothouse.cli.remote.roles import FILES, Role
from pilothouse.cli.remote.ssh import Host, SshError
from pilothouse.cli.remote.wheels import WheelSet

T = TypeVar("T")


class Refused(Exception):
    """The host cannot take the role; nothing was changed. One line naming all that lacks."""


class StepFailed(Exception):
    """A step failed midway; the message names the step, what was done, and says re-run."""


@dataclass(frozen=True, slots=True)
class FileSpec:
    path: str
    data: bytes
    mode: int = 0o644


@dataclass
class Installation:
    """One role going onto one host (see the module docstring)."""

    host: Host
    role: Role
    progress: Callable[[str], None] = lambda line: None
    changed: list[str] = field(default_factory=list)  # what this run changed, in order
    facts: checks.Facts | None = None

    @property
    def files(self) -> roles.RoleFiles:
        return FILES[self.role]

    async def step(self, name: str, action: Awaitable[T]) -> T:
        """Await one step, turning a failure into StepFailed with what was done before."""
        self.progress(name)
        try:
            return await action
        except (SshError, OSError) as error:
            done = ", ".join(self.changed) if self.changed else "nothing changed yet"
            raise StepFailed(
                f"failed while {name}: {error} (done before: {done}; running again is safe)"
            ) from None

    # -- steps -----------------------------------------------------------------------------

    async def check(self) -> checks.Facts:
        """The host's facts; Refused (nothing changed) if it cannot take the role."""
        root = await self.host.elevate()
        probed = await self.host.run(checks.PROBE, check=False, as_root=root)
        facts = checks.parse(probed.stdout, root=root)
        problems = checks.missing(facts, self.role, user=self.host.target.user)
        if problems:
            raise Refused(
                f"cannot run {'an agent' if self.role is Role.AGENT else 'a control plane'} "
                f"there: {'; '.join(problems)} (nothing was changed)"
            )
        self.facts = facts
        return facts

    async def packages(self) -> None:
        wanted = " ".join(self.files.packages)
        query = (
            f"for p in {wanted}; do dpkg-query -W -f='${{Status}} ${{Package}}\\n' $p "
            "2>/dev/null || echo missing $p; done"
        )
        listed = await self.host.run(query, check=False)
        missing = [
            line.split()[-1]
            for line in listed.stdout.splitlines()
            if line.strip() and not line.startswith("install ok installed")
        ]
        if not missing:
            return
        self.progress(f"installing {' '.join(missing)} (apt)")
        await self.host.run(
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y "
            f"-qq --no-install-recommends {' '.join(missing)}"
        )
        for unit in self.files.disable:
            await self.host.run(f"systemctl disable --now {unit}", check=False)
        self.changed.append(f"packages {' '.join(missing)}")

    async def wheels(self, wheels: WheelSet) -> bool:
        """Copy the wheels that differ, install them if the set changed; True if it did."""
        listed = await self.host.run(
            f"mkdir -p {roles.WHEELS} && cd {roles.WHEELS} && sha256sum *.whl 2>/dev/null; "
            f"cat {roles.INSTALLED_MARK} 2>/dev/null | sed 's/^/installed /'",
            check=False,
        )
        present, installed = {}, ""
        for line in listed.stdout.splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "installed":
                installed = words[1]
            elif len(words) == 2:
                present[words[1]] = words[0]
        copy = {}
        for path in wheels.files:
            data = path.read_bytes()
            if present.get(path.name) != hashlib.sha256(data).hexdigest():
                copy[f"{roles.WHEELS}/{path.name}"] = (data, 0o644)
        await self.host.put_many(copy)
        copied = len(copy)
        stale = [name for name in present if name not in {p.name for p in wheels.files}]
        if stale:
            quoted = " ".join(shlex.quote(f"{roles.WHEELS}/{n}") for n in stale)
            await self.host.run(f"rm -f {quoted}")
        if copied:
            self.changed.append(f"{copied} wheels copied")
        if installed == wheels.digest:
            return False
        self.progress("installing Pilothouse into its virtualenv")
        # The venv gets no pip of its own (ensurepip takes minutes on a slow machine): pip runs
        # from the wheel Debian's python3-venv ships. A package that was installed before is
        # reinstalled (same version number, other code).
        pip = (
            f"{roles.VENV}/bin/python $(ls /usr/share/python-wheels/pip-*.whl | tail -n 1)/pip "
            f"install --no-index --find-links {roles.WHEELS} --no-compile -q "
            "--disable-pip-version-check --root-user-action=ignore"
        )
        await self.host.run(
            f"test -x {roles.VENV}/bin/python || python3 -m venv --without-pip {roles.VENV}; "
            f"{pip} {roles.WHEELS}/*.whl && "
            f"if test -e {roles.INSTALLED_MARK}; then {pip} --no-deps --force-reinstall "
            f"{roles.WHEELS}/{wheels.pilothouse.name}; fi && "
            f"ln -sf {roles.VENV}/bin/pilothouse {roles.BIN} && "
            f"echo {wheels.digest} > {roles.INSTALLED_MARK}"
        )
        self.changed.append("Pilothouse installed")
        return True

    async def write(self, spec: FileSpec) -> bool:
        """Write a file whose content differs (or is missing); True if it did."""
        found = await self.host.run(f"sha256sum {shlex.quote(spec.path)} 2>/dev/null", check=False)
        if found.stdout.split()[:1] == [hashlib.sha256(spec.data).hexdigest()]:
            return False
        await self.host.put(spec.path, spec.data, mode=spec.mode)
        self.changed.append(spec.path)
        return True

    async def remove(self, path: str) -> None:
        await self.host.run(f"rm -f {shlex.quote(path)}")

    async def start(self, *, restart: bool) -> bool:
        """Enable the unit and make it run; restart it when `restart` or it is not active.
        True if it was (re)started."""
        unit = self.files.unit
        await self.host.run(f"systemctl enable {unit} >/dev/null 2>&1")
        active = await self.host.run(f"systemctl is-active {unit}", check=False)
        if not restart and active.stdout.strip() == "active":
            return False
        await self.host.run(f"systemctl restart {unit}")
        was = "restarted" if active.stdout.strip() == "active" else "started"
        self.changed.append(f"{unit} {was}")
        return True

    async def reload_units(self) -> None:
        await self.host.run("systemctl daemon-reload")


def settings_file(role: Role, arguments: list[str]) -> bytes:
    """The role's /etc/default file: one variable with the process's arguments."""
    files = FILES[role]
    for word in arguments:
        if not word or any(c.isspace() or c in "\"'\\$" for c in word):
            raise ValueError(f"argument {word!r}: no spaces, quotes, $ or \\ (systemd splits it)")
    words = " ".join(arguments)
    return (
        "# Written by `pilothouse "
        + ("node add" if role is Role.AGENT else "controlplane install")
        + "`; running it again rewrites this file.\n"
        + f"{files.variable}={words}\n"
    ).encode()


def unit_file(role: Role, text: str) -> FileSpec:
    return FileSpec(path=f"/etc/systemd/system/{FILES[role].unit}", data=text.encode())


def extra_files(files: Mapping[str, bytes]) -> list[FileSpec]:
    return [FileSpec(path=path, data=data) for path, data in files.items()]
