"""The control plane's channel to etcd pings it under an idle watch (issue 17), real etcd.

Informers hold watches on etcd that carry nothing while nothing changes. An etcd member that
hangs (SIGSTOP here; a frozen VM, a cut link) must interrupt those watches within the
channel's ping interval + ping timeout (10 s + 5 s), so that the store moves on to another
member, not after gRPC's default one-minute wait for a ping's answer. Once etcd answers again
the watch resumes where it stopped and misses nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

from structlog.testing import capture_logs

from controlplane.store.etcd import EtcdStore
from tests.fixtures.etcd import EtcdServer
from tests.unit.waiting import eventually

PINGS_NOTICE_WITHIN_S = 10 + 5  # etcdrpc's ping interval + ping timeout


async def test_a_hung_etcd_interrupts_an_idle_watch_within_the_ping_timeout(
    etcd_server: EtcdServer,
) -> None:
    store: EtcdStore = etcd_server.store(root=f"/test-{uuid.uuid4().hex[:12]}")
    process = etcd_server._process
    assert process is not None
    seen: list[str] = []

    async def watch(since: int) -> None:
        async for change in store.watch("/pings/", since=since):
            seen.append(change.key)

    try:
        created = await store.create("/pings/before", b"1")
        watching = asyncio.create_task(watch(created.revision))
        with capture_logs() as logs:
            os.kill(process.pid, signal.SIGSTOP)
            frozen = time.monotonic()

            def interrupted() -> bool:
                return any(entry["event"] == "store.watch_interrupted" for entry in logs)

            # The bound leaves room for a loaded machine and stays far below gRPC's minute.
            await eventually(interrupted, "the idle watch on a hung etcd was not interrupted", 45)
            took = time.monotonic() - frozen
            os.kill(process.pid, signal.SIGCONT)
        assert took < PINGS_NOTICE_WITHIN_S + 15, f"noticed only after {took:.1f} s"

        await store.create("/pings/after", b"2")
        await eventually(lambda: seen == ["/pings/after"], f"the watch resumed: {seen}")
        watching.cancel()
    finally:
        os.kill(process.pid, signal.SIGCONT)
        await store.close()
