"""`python3 -m pilothouse.cli.vm --machines 3`: a disposable VM lab on this machine (as root).

Builds (or reuses) the image and Pilothouse's wheels (here, where pip's index is reachable:
`node add` inside the namespace then builds from the wheel pool offline), boots the machines on
a bridge in a network namespace of their own, prints how to reach them (the namespace, the
addresses, the SSH key and known_hosts), and keeps them until Ctrl-C or SIGTERM, then removes
everything. Inside the namespace (`nsenter --net=/run/netns/phvm-<lab> bash`) the bridge's
address (10.77.0.1) is this machine: run a control plane there and `pilothouse node add` the
machines, as README's "Running on VMs" shows.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path

from pilothouse import logs
from pilothouse.cli.vm.lab import Lab
from pilothouse.cli.vm.machine import DEFAULT_MEMORY_MIB


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m pilothouse.cli.vm", description=__doc__)
    p.add_argument("--machines", type=int, default=3, help="how many VMs (default 3)")
    p.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MIB, help="MiB per VM")
    p.add_argument("--dir", type=Path, default=None, help="the lab's directory (default: temp)")
    p.add_argument("--debug", action="store_true")
    return p


async def _run(args: argparse.Namespace) -> int:
    directory = args.dir or Path(tempfile.mkdtemp(prefix="phvm-"))
    from pilothouse.cli.remote import wheels

    built = await asyncio.to_thread(wheels.build)
    with Lab.create(directory, machines=args.machines, memory_mib=args.memory) as lab:
        booted = await lab.boot_all()
        print(f"lab {lab.name}: {len(booted)} machines ({lab.accel}), image {lab.image.key}")
        print(f"  namespace: nsenter --net={lab.network.netns_path} bash")
        print(f"  this machine in it: {lab.network.gateway}")
        for machine, took in zip(lab.machines, booted, strict=True):
            print(f"  {machine.name}: root@{machine.address} (SSH after {took.seconds:.0f} s)")
        print(f"  ssh -i {lab.key.private} -o UserKnownHostsFile={lab.known_hosts} root@ADDRESS")
        print(f"  node add --ssh-key {lab.key.private} --known-hosts {lab.known_hosts} "
              f"[--wheels {built.directory}] root@ADDRESS ...")  # fmt: skip
        print("Ctrl-C removes the machines and the namespace.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(debug=args.debug)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
