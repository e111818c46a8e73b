"""A container's lifecycle hooks, run as the kubelet runs them: postStart right after the
container started, preStop before it is sent SIGTERM.

The hook's action (exec in the container, httpGet or tcpSocket against the pod, or sleep)
runs through the pod's probe handlers, so it reaches the container exactly as its probes
do. It has at most the pod's termination grace period to finish. When it fails, the kubelet
records FailedPostStartHook with the hook's output and kills the container, which then
restarts per the pod's restart policy; while it runs, the container is not started (a
sidecar holds the next init container back until its hook is done). preStop runs within the
container's grace period (what it takes is no longer left for SIGTERM); a failure is the
kubelet's FailedPreStopHook warning and the container is stopped all the same.
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
    probe = _as_probe(hook)
    if probe is None:
        return "the postStart hook has no action"
    try:
        async with asyncio.timeout(limit):
            result = await handler.check(probe, target, time_limit=limit)
    except TimeoutError:
        return f"the postStart hook did not finish within {limit:g}s"
    if result.outcome is Outcome.SUCCESS:
        return None
    return result.message or "the postStart hook failed"


async def pre_stop(
    container: objects_pb2.Container, handler: Handler, target: Target, *, limit: float
) -> str | None:
    """Run the container's preStop hook within `limit` seconds (its part of the grace period);
    None when it succeeded or there is none, else why it failed (termination goes on)."""
    if not container.lifecycle.HasField("pre_stop") or limit <= 0:
        return None
    hook = container.lifecycle.pre_stop
    try:
        if hook.HasField("sleep"):
            await asyncio.sleep(min(max(hook.sleep.seconds, 0), limit))
            return None
        probe = _as_probe(hook)
        if probe is None:
            return "the preStop hook has no action"
        async with asyncio.timeout(limit):
            result = await handler.check(probe, target, time_limit=limit)
    except TimeoutError:
        return f"the preStop hook did not finish within the grace period ({limit:g}s)"
    return None if result.outcome is Outcome.SUCCESS else (result.message or "it failed")


def _as_probe(hook: objects_pb2.LifecycleHandler) -> objects_pb2.Probe | None:
    """The hook's exec, httpGet or tcpSocket action as a probe the handler runs (None: none)."""
    probe = objects_pb2.Probe()
    for field in ("exec", "http_get", "tcp_socket"):
        if hook.HasField(field):
            getattr(probe, field).CopyFrom(getattr(hook, field))
            return probe
    return None
