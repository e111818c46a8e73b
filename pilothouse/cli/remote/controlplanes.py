"""`pilothouse controlplane install USER@HOST`: a control plane on a host, the way `node add`
puts agents on hosts, and the admin's credentials brought back here.

Steps: connect (host key verified); check the host (Debian 12, cgroup v2, systemd, root or
sudo; nothing changed when refused); the Debian packages it lacks (etcd-server among them;
Debian's own etcd service is disabled, the control plane runs its own member); the wheels and
the virtualenv; /etc/default/pilothouse-controlplane (`--listen HOST:7070 --tls-san HOST`,
0.0.0.0 for a HOST that is a name, and `--name`, the etcd member's name, when given) and the
unit from deploy/systemd; start it and wait until it has written its admin credentials; copy
them here (`--out`, default
~/.pilothouse/HOST/: ca.crt, admin.crt, admin.key 0600 and a config.yaml naming HOST:7070) and
check the API answers with them. Idempotent like `node add`: a second run changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import shlex
import time
from pathlib import Path

import yaml

from pilothouse import credentials
from pilothouse.cli.context import Context
from pilothouse.cli.remote import ssh
from pilothouse.cli.remote.install import FileSpec, Installation, StepFailed, settings_file
from pilothouse.cli.remote.install import unit_file as unit_spec
from pilothouse.cli.remote.roles import FILES, Role, unit_text
from pilothouse.cli.remote.wheels import WheelError, build, from_directory, source_tree
from pilothouse.cli.usage import UsageError

API_PORT = 7070


async def run_install(args: argparse.Namespace, ctx: Context) -> int:
    try:
        target = ssh.Target.parse(args.target)
        wheels = from_directory(args.wheels) if args.wheels else await asyncio.to_thread(build)
        unit = unit_text(Role.CONTROLPLANE, source_tree())
    except (ValueError, WheelError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    started = time.monotonic()

    def say(text: str) -> None:
        ctx.err.write(f"{target}: {text}\n")
        ctx.err.flush()

    say("connecting")
    host = await ssh.connect(
        target, key=args.ssh_key, known_hosts=args.known_hosts, accept_new=args.accept_new
    )
    async with host:
        job = Installation(host=host, role=Role.CONTROLPLANE, progress=say)
        await job.step("checking the host", job.check())
        await job.step("installing packages", job.packages())
        installed = await job.step("copying Pilothouse", job.wheels(wheels))
        flags = ["--listen", f"{_listen_host(target.host)}:{API_PORT}", "--tls-san", target.host]
        if args.name:
            flags += ["--name", args.name, "--etcd-name", args.name]
        files = FILES[Role.CONTROLPLANE]
        settings = FileSpec(files.defaults, settings_file(Role.CONTROLPLANE, flags))
        wrote_settings = await job.step("writing settings", job.write(settings))
        unit_file = unit_spec(Role.CONTROLPLANE, unit)
        wrote_unit = await job.step("writing the unit", job.write(unit_file))
        if wrote_unit:
            await job.step("reloading systemd", job.reload_units())
        restart = bool(installed or wrote_settings or wrote_unit)
        await job.step("starting the control plane", job.start(restart=restart))
        say("waiting for its admin credentials")
        config = await _fetch_credentials(host, target, out=args.out, wait_seconds=args.timeout)
    say("checking the API with them")
    await _answers(config)
    what = "; ".join(job.changed) if job.changed else "nothing changed"
    ctx.print(
        f"control plane on {target.host} serving at {target.host}:{API_PORT} "
        f"({time.monotonic() - started:.0f} s: {what})"
    )
    ctx.print(f"admin credentials: {config} (export PILOTHOUSE_CONFIG={config})")
    return 0


def _listen_host(host: str) -> str:
    """The address to serve on: the target's, when it is one (members then advertise it),
    else every address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "0.0.0.0"
    return host


async def _fetch_credentials(
    host: ssh.Host, target: ssh.Target, *, out: Path | None, wait_seconds: float
) -> Path:
    """Wait for the control plane's admin.conf, copy it and its files here; the config path."""
    state = FILES[Role.CONTROLPLANE].state_dir
    deadline = time.monotonic() + wait_seconds
    while True:
        found = await host.run(f"test -s {state}/controlplane.addr && cat {state}/admin.conf",
                               check=False)  # fmt: skip
        if found.exit_status == 0 and found.stdout.strip():
            break
        if time.monotonic() > deadline:
            said = await host.run(
                "journalctl -u pilothouse-controlplane -n 3 --no-pager -o cat", check=False
            )
            last = (said.stdout.strip().splitlines() or ["(no log)"])[-1]
            raise StepFailed(
                f"the control plane did not start within {wait_seconds:.0f} s; its last log "
                f"line: {last[:200]} (running again is safe)"
            )
        await asyncio.sleep(1.0)
    remote = yaml.safe_load(found.stdout) or {}
    directory = (out or Path.home() / ".pilothouse" / target.host).expanduser()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    local = {}
    names = (("ca-cert", "ca.crt"), ("client-cert", "admin.crt"), ("client-key", "admin.key"))
    for key, name in names:
        # The config names its files relative to its own directory (or absolutely).
        data = (await host.run(f"cd {state} && cat {shlex.quote(remote[key])}")).stdout.encode()
        path = directory / name
        path.touch(mode=0o600)
        path.write_bytes(data)
        local[key] = path
    config = directory / "config.yaml"
    credentials.write_client_config(
        config,
        server=f"{target.host}:{API_PORT}",
        ca_cert=local["ca-cert"],
        client_cert=local["client-cert"],
        client_key=local["client-key"],
    )
    return config


async def _answers(config: Path) -> None:
    from pilothouse import config as cli_config
    from pilothouse.client import Client
    from pilothouse.kinds import Kind

    settings = cli_config.resolve(config_path=str(config), environ={})
    material = credentials.from_config(settings)
    assert material is not None
    async with Client(
        settings.server,
        credentials=material.channel_credentials(),
        options=credentials.channel_options(),
    ) as client:
        await client.list(Kind.NODE)
