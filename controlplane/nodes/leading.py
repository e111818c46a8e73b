"""Agent calls that only a current leader may make.

`while_leading(connect, valid)` dials agents as `connect` does, but every push (a `sync_*`
call: desired pods, services …) first checks `valid()` (the term's: `Term.valid`) and is
refused with `AgentCallFailed(FAILED_PRECONDITION)` once it is False. A leader resumed after
SIGSTOP past its lease must not push its stale view to agents in the moment before its parts
are cancelled: its store writes are fenced by etcd, but pushes to agents do not go through
etcd. Reads (pod watches, logs) pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.nodes.agent import AgentCallFailed, AgentClient, Connect


def while_leading(connect: Connect, valid: Callable[[], bool]) -> Connect:
    def dial(address: str, node: str) -> AgentClient:
        return _LeaderClient(connect(address, node), valid)  # type: ignore[return-value]

    return dial


class _LeaderClient:
    def __init__(self, client: AgentClient, valid: Callable[[], bool]) -> None:
        self._client = client
        self._valid = valid

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._client, name)
        if not name.startswith("sync_"):
            return attribute

        async def pushed(*args: object, **kwargs: object) -> object:
            if not self._valid():
                raise AgentCallFailed(
                    "FAILED_PRECONDITION",
                    "not pushed: this control-plane member's term as leader has ended",
                )
            return await attribute(*args, **kwargs)  # type: ignore[operator]

        return pushed
