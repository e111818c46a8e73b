"""The leader lease's own thread: renewals that a busy control plane cannot starve.

Why: the control plane's one event loop also serves the API, takes every node's heartbeat
and runs the controllers. With 1,000 hollow nodes a 2 s lease (renewed every 0.67 s) was
lost 98 times in one run because its renewals waited behind seconds of that work, and each
loss stopped and restarted every leader-only part. Here renewals run on a thread of their own
with its own event loop and its own etcd connection; the interpreter switches threads every
few milliseconds, so a renewal waits milliseconds, not seconds. A member that is really gone
(killed, paused, cut off from etcd) still loses its lease as before.

Invariants:
- Code on the keeper's loop touches only the keeper's store and what its caller hands it;
  what it must tell the main loop goes through `loop.call_soon_threadsafe` (the caller's job,
  see `election._Session`).
- `spawn` and `cancel` are awaited on the caller's loop and return once the keeper's loop has
  done it: after `cancel` returns, the coroutine has ended.
- `stop` closes the keeper's store on its own loop and joins the thread; a keeper is started
  by its first `spawn`, so an election that never campaigns starts no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from controlplane.store import Store

Work = Callable[[Store], Coroutine[Any, Any, None]]


class LeaseKeeper:
    """A thread running an event loop with a store of its own (made by `connect` there)."""

    def __init__(self, connect: Callable[[], Store], *, name: str = "leader-lease") -> None:
        self._connect = connect
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    async def spawn(self, work: Work) -> asyncio.Task[None]:
        """Run `work(store)` on the keeper's loop; returns its task (a handle for `cancel`)."""
        loop = self._ensure()

        async def start() -> asyncio.Task[None]:
            if self._store is None:
                self._store = self._connect()
            return asyncio.get_running_loop().create_task(work(self._store))

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(start(), loop))

    async def cancel(self, task: asyncio.Task[None]) -> None:
        """Cancel `task` (from `spawn`) and return once it has ended."""
        if self._loop is None or self._loop.is_closed():
            return

        async def end() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        with contextlib.suppress(RuntimeError):  # the keeper stopped meanwhile
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(end(), self._loop))

    async def stop(self) -> None:
        """End every task, close the store, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._store is not None:
                await self._store.close()

        with contextlib.suppress(RuntimeError):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        self._loop = self._thread = self._store = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()  # work sent before it runs waits in its queue

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        self._loop = loop
        return loop
