"""`pilothouse controlplane`: wires store → ObjectStore → API and runs them until stopped.

The wiring is explicit and happens only here (no registration at import time). Order matters:
1. etcd first (embedded: started and then supervised), because everything reads from it;
2. the API binds its address before the runnables start, so a taken port fails fast;
3. `controlplane.addr` is written only once the API serves, and removed on the way out.

SIGTERM and SIGINT stop everything cleanly, the embedded etcd child last. A part that stops
on its own makes the process exit non-zero (see `controlplane.runnable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import structlog

from controlplane import config as settings
from controlplane.api.server import ApiServer, BindError
from controlplane.objects import ObjectStore
from controlplane.runnable import Runnable, RunnableExited, run_all
from controlplane.store.embedded import EmbeddedEtcd, EtcdNotFound, EtcdStartFailed
from controlplane.store.etcd import EtcdStore
from pilothouse import logs

log = structlog.get_logger(__name__)


class _Etcd:
    """The embedded etcd as a runnable: keeps it alive, restarts it when it dies."""

    name = "etcd"
    needs_leadership = False

    def __init__(self, etcd: EmbeddedEtcd) -> None:
        self._etcd = etcd

    async def run(self) -> None:
        await self._etcd.run()


def runnables(
    *, api: ApiServer, objects: ObjectStore, embedded: EmbeddedEtcd | None
) -> list[Runnable]:
    """Every long-lived part of the control plane. Controllers, the scheduler and node sync
    join this list as they land (they take `objects`)."""
    parts: list[Runnable] = []
    if embedded is not None:
        parts.append(_Etcd(embedded))
    parts.append(api)
    _ = objects
    return parts


async def serve(config: settings.Config) -> int:
    """Run the control plane until cancelled (0) or until a part fails (1)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = None if config.etcd_endpoints else EmbeddedEtcd(data_dir=config.etcd_dir)
    store: EtcdStore | None = None
    api: ApiServer | None = None
    try:
        endpoints = [await embedded.start()] if embedded else list(config.etcd_endpoints)
        store = EtcdStore(endpoints)
        objects = ObjectStore(store)
        api = ApiServer(objects=objects, listen=config.listen)
        address = await api.start()
        _write_address(config, address)
        log.info(
            "controlplane.serving",
            address=address,
            etcd=",".join(endpoints),
            embedded_etcd=embedded is not None,
            data_dir=str(config.data_dir),
        )
        print(f"pilothouse control plane serving on {address}", flush=True)
        await run_all(runnables(api=api, objects=objects, embedded=embedded))
    except RunnableExited as error:
        log.error("controlplane.failed", error=str(error))
        return 1
    except asyncio.CancelledError:
        log.info("controlplane.stopping")
        return 0
    finally:
        # Stop taking calls first, then drop etcd: the reverse of the start order.
        with contextlib.suppress(FileNotFoundError):
            config.address_file.unlink()
        if api is not None:
            await api.stop()
        if store is not None:
            await store.close()
        if embedded is not None:
            await embedded.stop()
        log.info("controlplane.stopped")
    return 0


def _write_address(config: settings.Config, address: str) -> None:
    temporary = config.address_file.with_suffix(".tmp")
    temporary.write_text(address + "\n")
    temporary.replace(config.address_file)


async def _run_until_signalled(config: settings.Config) -> int:
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(serve(config))
    stopping = False

    def stop() -> None:
        # Only the first signal cancels; later ones must not interrupt the clean-up.
        nonlocal stopping
        if not stopping:
            stopping = True
            running.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        return await running
    except asyncio.CancelledError:  # signalled before `serve` even began
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `pilothouse controlplane` and `python3 -m controlplane`."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = settings.parse(argv)
    except settings.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logs.setup(debug=config.debug)
    try:
        return asyncio.run(_run_until_signalled(config))
    except (EtcdNotFound, EtcdStartFailed, BindError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
