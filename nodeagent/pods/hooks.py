"""A container's postStart hook: run right after the container started, as the kubelet does.

The hook's action (exec in the container, httpGet or tcpSocket against the pod, or sleep)
runs through the pod's probe handlers, so it reaches the container exactly as its probes
do. It has at most the pod's termination grace period to finish. When it fails, the kubelet
records FailedPostStartHook with the hook's output and kills the container, which then
restarts per the pod's restart policy; while it runs, the container is not started (a
sidecar holds the next init container back until its hook is done).
"""

from __future__ import annotations

import asyncio

from nodeagent.pods.stop import grace_seconds
from nodeagent.probes import Handler, Outcome, Target
from pilothouse.v1 import objects_pb2


async def post_start(
    pod: objects_pb2.Pod, container: objects_pb2.Container, handler: Handler, target: Target
) -> str | None:
    """None when the hook succeeded (or there is none); else why it failed."""
    if not container.lifecycle.HasField("post_start"):
        return None
    hook = container.lifecycle.post_start
    limit = float(max(grace_seconds(pod), 1))
    if hook.HasField("sleep"):
        await asyncio.sleep(max(hook.sleep.seconds, 0))
        return None
    probe = objects_pb2.Probe()
    if hook.HasField("exec"):
        probe.exec.CopyFrom(hook.exec)
    elif hook.HasField("http_get"):
        probe.http_get.CopyFrom(hook.http_get)
    elif hook.HasField("tcp_socket"):
        probe.tcp_socket.CopyFrom(hook.tcp_socket)
    else:
        return "the postStart hook has no action"
    try:
        result = await asyncio.wait_for(handler.check(probe, target, time_limit=limit), limit)
    except TimeoutError:
        return f"the postStart hook did not finish within {limit:g}s"
    if result.outcome is Outcome.SUCCESS:
        return None
    return result.message or "the postStart hook failed"
