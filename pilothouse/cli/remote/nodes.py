"""`pilothouse node add USER@HOST...` and `pilothouse node remove NAME` (admin only).

`node add`, for every host at once (one progress line each): connect over SSH and verify the
host key; check the host (a refusal changes nothing); install the Debian packages it lacks
with its own apt; copy Pilothouse and its Python dependencies as wheels built here (the host
downloads nothing) into a virtualenv; make a join token (single use, for this node only, an
hour) unless the node already holds credentials of this cluster, and write it to a 0600 file
there; write /etc/default/pilothouse-agent and the unit from deploy/systemd; start the agent;
wait until the Node is Ready; set `--labels` and the annotation `node remove` reads; remove
the token file and the token. Running it again changes nothing; a failure says which step
failed and what was done, and running again is safe.

`node remove NAME`: cordon and drain the node, stop and disable its agent over SSH and remove
its unit, settings and state (kept when something is still mounted under it), then delete the
Node (which cuts off its credentials). A host that cannot be reached is said so, and the Node
is deleted all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import time
from dataclasses import dataclass

from pilothouse import credentials, pki
from pilothouse.cli.context import Context
from pilothouse.cli.remote import roles, ssh
from pilothouse.cli.remote.install import (
    FileSpec,
    Installation,
    Refused,
    StepFailed,
    settings_file,
    unit_file,
)
from pilothouse.cli.remote.progress import Progress
from pilothouse.cli.remote.roles import FILES, Role
from pilothouse.cli.remote.wheels import WheelError, WheelSet, build, from_directory, source_tree
from pilothouse.cli.usage import UsageError
from pilothouse.client import Client, ClientError, ErrorCode
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Added:
    name: str
    target: str
    seconds: float
    changed: tuple[str, ...]


async def run_add(args: argparse.Namespace, ctx: Context) -> int:
    targets = [_target(t) for t in args.targets]
    if args.name and len(targets) > 1:
        raise UsageError("--name names one node: give one host with it")
    labels = _labels(args.labels)
    material = credentials.from_config(ctx.config)
    if material is None or material.cert_pem is None:
        raise UsageError(
            "node add needs the admin credentials: pass --config <data-dir>/admin.conf "
            "(written by `pilothouse controlplane`) or set PILOTHOUSE_CONFIG"
        )
    try:
        wheels = from_directory(args.wheels) if args.wheels else await asyncio.to_thread(build)
        unit = roles.unit_text(Role.AGENT, source_tree())
    except (WheelError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    registries = args.registries.read_bytes() if args.registries else None
    progress = Progress([str(t) for t in targets], ctx.err)
    async with ctx.connect() as client:
        adder = _Adder(
            ctx=ctx,
            client=client,
            ca_hash=pki.ca_cert_hash(material.ca_pem),
            wheels=wheels,
            unit=unit,
            registries=registries,
            labels=labels,
            args=args,
        )
        results = await asyncio.gather(
            *(adder.add(t, progress.reporter(str(t))) for t in targets), return_exceptions=True
        )
    failed = 0
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, Added):
            what = "; ".join(result.changed) if result.changed else "nothing changed"
            ctx.print(f"node/{result.name} Ready ({target}, {result.seconds:.0f} s: {what})")
        elif isinstance(result, Exception):
            failed += 1
            ctx.error(f"{target}: {_describe(result)}")
        else:
            raise result
    return 1 if failed else 0


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return error.message
    return str(error)


class _Adder:
    def __init__(
        self,
        *,
        ctx: Context,
        client: Client,
        ca_hash: str,
        wheels: WheelSet,
        unit: str,
        registries: bytes | None,
        labels: dict[str, str],
        args: argparse.Namespace,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.ca_hash = ca_hash
        self.wheels = wheels
        self.unit = unit
        self.registries = registries
        self.labels = labels
        self.args = args
        self.server = ctx.config.server

    async def add(self, target: ssh.Target, say) -> Added:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        say("connecting")
        host = await ssh.connect(
            target, key=self.args.ssh_key, known_hosts=self.args.known_hosts,
            accept_new=self.args.accept_new,
        )  # fmt: skip
        async with host:
            job = Installation(host=host, role=Role.AGENT, progress=say)
            await job.step("checking the host", job.check())
            name = self.args.name or (await host.run("hostname -s")).stdout.strip()
            node_ip = await job.step("finding its address", self._node_ip(host))
            await self._refuse_another_machine(name, node_ip)
            await job.step("installing packages", job.packages())
            await job.step("setting up the kernel", self._kernel(job))
            installed = await job.step("copying Pilothouse", job.wheels(self.wheels))
            token_id = ""
            if not await job.step("looking for credentials", self._joined(host)):
                token_id, token = await self._token(name)
                await job.step("writing the join token", job.write(_token_file(token)))
            flags = [
                "--name", name, "--server", self.server, "--node-ip", node_ip,
                "--network", "cni", "--ca-cert-hash", self.ca_hash,
                "--token-file", roles.TOKEN_FILE,
            ]  # fmt: skip
            if self.registries is not None:
                spec = FileSpec(roles.REGISTRIES_FILE, self.registries)
                await job.step("writing registries.yaml", job.write(spec))
                flags += ["--registries", roles.REGISTRIES_FILE]
            settings = FileSpec(FILES[Role.AGENT].defaults, settings_file(Role.AGENT, flags))
            wrote_settings = await job.step("writing settings", job.write(settings))
            wrote_unit = await job.step(
                "writing the unit", job.write(unit_file(Role.AGENT, self.unit))
            )
            if wrote_unit:
                await job.step("reloading systemd", job.reload_units())
            restart = bool(installed or wrote_settings or wrote_unit)
            await job.step("starting the agent", job.start(restart=restart))
            say("waiting for the node to be Ready")
            await self._wait_ready(host, name, node_ip)
            await self._label(name, target)
            if token_id:
                await job.step("removing the join token", job.remove(roles.TOKEN_FILE))
                await self._delete_token(token_id)
            seconds = time.monotonic() - started
            say(f"Ready ({seconds:.0f} s)")
            return Added(name, str(target), round(seconds, 1), tuple(job.changed))

    async def _kernel(self, job: Installation) -> None:
        """Modules and sysctls pods need, now and at every boot (files in /etc)."""
        wrote = [await job.write(FileSpec(p, d)) for p, d in roles.AGENT_KERNEL_FILES.items()]
        if any(wrote):
            await job.host.run("modprobe overlay; modprobe br_netfilter; sysctl -q --system")

    async def _node_ip(self, host: ssh.Host) -> str:
        """The host's address towards the control plane (its route's source)."""
        cp_host = self.server.split(",")[0].strip().rpartition(":")[0].strip("[]")
        try:
            ipaddress.ip_address(cp_host)
            address = cp_host
        except ValueError:
            address = (await asyncio.to_thread(socket.getaddrinfo, cp_host, None))[0][4][0]
        found = await host.run(f"ip -j route get {address}", check=False)
        try:
            source = str(json.loads(found.stdout or "[]")[0].get("prefsrc", ""))
        except (ValueError, IndexError):
            source = ""
        if not source:
            raise ssh.SshError(f"the host has no route to the control plane at {address}")
        return source

    async def _refuse_another_machine(self, name: str, node_ip: str) -> None:
        try:
            node = await self.client.get(Kind.NODE, name)
        except ClientError as error:
            if error.code is ErrorCode.NOT_FOUND:
                return
            raise
        assert isinstance(node, o.Node)
        known = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
        if known and known != node_ip and _ready(node):
            raise Refused(
                f'node "{name}" exists at {known}, another machine that is Ready: pick '
                "another --name, or `pilothouse node remove` it first (nothing was changed)"
            )

    async def _joined(self, host: ssh.Host) -> bool:
        """Whether the agent there holds credentials of this cluster (no token needed)."""
        pki_dir = f"{FILES[Role.AGENT].state_dir}/pki"
        found = await host.run(f"test -s {pki_dir}/node.crt && cat {pki_dir}/ca.crt", check=False)
        if found.exit_status != 0 or not found.stdout.strip():
            return False
        try:
            return pki.ca_cert_hash(found.stdout.encode()) == self.ca_hash
        except ValueError:
            return False

    async def _token(self, name: str) -> tuple[str, str]:
        from pilothouse.cli.remote import tokens

        return await tokens.create(
            self.ctx, node=name, ttl_seconds=TOKEN_TTL_SECONDS, description=f"node add {name}"
        )

    async def _delete_token(self, token_id: str) -> None:
        from pilothouse.cli.remote import tokens

        await tokens.delete(self.ctx, token_id)

    async def _wait_ready(self, host: ssh.Host, name: str, node_ip: str) -> None:
        deadline = time.monotonic() + self.args.timeout
        while True:
            try:
                node = await self.client.get(Kind.NODE, name)
            except ClientError as error:
                if error.code is not ErrorCode.NOT_FOUND:
                    raise
            else:
                assert isinstance(node, o.Node)
                address = next(
                    (a.address for a in node.status.addresses if a.type == "InternalIP"), ""
                )
                if _ready(node) and address == node_ip:
                    return
            if time.monotonic() > deadline:
                said = await host.run(
                    "journalctl -u pilothouse-agent -n 3 --no-pager -o cat", check=False
                )
                last = said.stdout.strip().splitlines()[-1:] or ["(no log)"]
                raise StepFailed(
                    f"node {name} not Ready within {self.args.timeout:.0f} s; the agent's last "
                    f"log line: {last[0][:200]} (running again is safe)"
                )
            await asyncio.sleep(1.0)

    async def _label(self, name: str, target: ssh.Target) -> None:
        """Set --labels and the SSH annotation, if they differ (conflicts retried)."""
        for _ in range(5):
            node = await self.client.get(Kind.NODE, name)
            assert isinstance(node, o.Node)
            wanted = dict(self.labels)
            if all(
                node.metadata.labels.get(k) == v for k, v in wanted.items()
            ) and node.metadata.annotations.get(roles.SSH_ANNOTATION) == str(target):
                return
            node.metadata.labels.update(wanted)
            node.metadata.annotations[roles.SSH_ANNOTATION] = str(target)
            try:
                await self.client.apply(node)
                return
            except ClientError as error:
                if error.code is not ErrorCode.CONFLICT:
                    raise


def _ready(node: o.Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def _token_file(token: str) -> FileSpec:
    return FileSpec(roles.TOKEN_FILE, (token + "\n").encode(), mode=0o600)


def _target(text: str) -> ssh.Target:
    try:
        return ssh.Target.parse(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _labels(text: str) -> dict[str, str]:
    out = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--labels {text!r}: expected KEY=VALUE,...")
        out[key] = value
    return out
