"""run_all: parts run until stopped; a part that stops on its own stops the process loudly."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.process.runnable import RunnableExited, Task, run_all


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_part_that_returns_stops_everything_and_is_named() -> None:
    async def quits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RunnableExited, match="'quitter' returned"):
        await asyncio.wait_for(run_all([Task("a", forever), Task("quitter", quits)]), 5)


async def test_a_part_that_raises_stops_everything_and_is_named() -> None:
    async def breaks() -> None:
        raise OSError("disk gone")

    with pytest.raises(RunnableExited, match="'broken' failed: OSError") as caught:
        await asyncio.wait_for(run_all([Task("a", forever), Task("broken", breaks)]), 5)
    assert isinstance(caught.value.error, OSError)


async def test_cancel_stops_parts_in_reverse_order_with_named_tasks() -> None:
    stopped: list[str] = []
    names: list[str] = []
    all_started = asyncio.Event()

    def part(name: str) -> Task:
        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            names.append(task.get_name())
            if len(names) == 3:
                all_started.set()
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(name)

        return Task(name, run)

    running = asyncio.create_task(run_all([part("store"), part("api"), part("controller")]))
    await asyncio.wait_for(all_started.wait(), 5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert sorted(names) == ["api", "controller", "store"]
    assert stopped == ["controller", "api", "store"], "the store stopped before its users"


async def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        await run_all([Task("a", forever), Task("a", forever)])


async def test_leader_only_parts_run_only_in_a_term_of_leadership() -> None:
    controller = Task("controller", forever, needs_leadership=True)
    with pytest.raises(ValueError, match=r"\['controller'\] declare needs_leadership"):
        await run_all([Task("api", forever), controller])
    with pytest.raises(ValueError, match=r"\['api'\] do not declare needs_leadership"):
        await run_all([Task("api", forever), controller], leading=True)
