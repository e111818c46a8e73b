"""A pod's container logs as `pilothouse logs` asks for them: which file, then its lines.

Role: name the log file of a container's current attempt (or, with `previous`, the attempt
before it) from what its pod worker knows, and read that file (all of it or its last lines)
or follow it until the attempt is over. The files are the runtime's CRI logs
(`nodeagent.runtime.logs` decodes them); each attempt has its own (`<attempt>.log`).

Invariants: the errors are kubectl's (a container must be named when the pod has several;
no previous container before the first restart); a log that is read, not followed, goes out
in batches of at most 512 lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from nodeagent.pods import specs
from nodeagent.pods.worker import PodWorker
from nodeagent.runtime import logs as cri_logs


class PodNotFound(LookupError):
    """No such pod (or container) on this node."""


class BadRequest(ValueError):
    """The request cannot be answered as asked (e.g. a container name is needed)."""


def log_path(worker: PodWorker, *, state_dir: Path, container: str, previous: bool) -> Path:
    """The log file of the pod's container (its current attempt, or the previous one)."""
    pod = worker.pod.metadata.name
    names = [c.name for c in worker.pod.spec.containers]
    if not container:
        if len(names) != 1:
            inits = [c.name for c in worker.pod.spec.init_containers]
            also = f" or one of the init containers: [{' '.join(inits)}]" if inits else ""
            raise BadRequest(
                f"a container name must be specified for pod {pod}, "
                f"choose one of: [{' '.join(names)}]{also}"
            )
        container = names[0]
    if container not in worker.records:
        raise PodNotFound(f'container "{container}" is not valid for pod "{pod}"')
    attempt = worker.records[container].restart_count
    if previous:
        if attempt == 0:
            raise BadRequest(
                f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        attempt -= 1
    return specs.log_path(state_dir, worker.pod, container, attempt)


async def lines(
    path: Path,
    *,
    tail_lines: int,
    follow: bool,
    finished: Callable[[], bool],
    since: datetime | None = None,
    timestamps: bool = False,
) -> AsyncIterator[bytes]:
    """The log's output lines (`tail_lines` < 0: all); `follow` streams until `finished()`.
    `since`: only lines written at or after it (before the tail is taken, as the kubelet
    does); `timestamps`: each line prefixed with its RFC 3339 time."""
    count = None if tail_lines < 0 else tail_lines

    def render(line: cri_logs.LogLine) -> bytes:
        if timestamps:
            stamp = line.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return f"{stamp} {line.text}\n".encode()
        return line.text.encode() + b"\n"

    if not follow:
        batch: list[bytes] = []
        found = await asyncio.to_thread(cri_logs.tail, path, None if since else count)
        if since is not None:
            found = [line for line in found if line.time >= since]
            if count is not None:
                found = found[-count:] if count else []
        for line in found:
            batch.append(render(line))
            if len(batch) >= 512:
                yield b"".join(batch)
                batch.clear()
        if batch:
            yield b"".join(batch)
        return
    if since is None:
        async for line in cri_logs.follow(path, lines=count, done=finished):
            yield render(line)
        return
    # The initial tail of the lines since `since`, then every new line.
    recent = [
        line for line in await asyncio.to_thread(cri_logs.tail, path, None) if line.time >= since
    ]
    if count is not None:
        recent = recent[-count:] if count else []
    for line in recent:
        yield render(line)
    async for line in cri_logs.follow(path, lines=0, done=finished):
        yield render(line)
