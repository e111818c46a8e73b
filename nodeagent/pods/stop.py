"""Stopping a pod's containers: grace periods and the SIGTERM-then-SIGKILL sequence.

Role: how long a container is given to end (the pod's terminationGracePeriodSeconds, or a
failed probe's own), and ending one container within it.

Invariants:
- A container gets SIGTERM first and SIGKILL only once its grace period has passed.
- A container already gone counts as stopped; stopping never raises for runtime errors (they
  are logged), so one stubborn container does not hold up the rest of a pod's teardown.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from nodeagent.probes import Kind
from nodeagent.runtime import ContainerNotFound, ContainerRuntime, RuntimeError_
from pilothouse.v1 import objects_pb2

DEFAULT_GRACE_SECONDS = 30


def grace_seconds(pod: objects_pb2.Pod) -> int:
    """The pod's terminationGracePeriodSeconds, else Kubernetes' default."""
    if pod.spec.HasField("termination_grace_period_seconds"):
        return pod.spec.termination_grace_period_seconds
    return DEFAULT_GRACE_SECONDS


def probe_grace_seconds(
    pod: objects_pb2.Pod, container: objects_pb2.Container, kind: Kind
) -> float:
    """The probe's terminationGracePeriodSeconds, else the pod's (Kubernetes' rule)."""
    probe = container.liveness_probe if kind is Kind.LIVENESS else container.startup_probe
    if probe.HasField("termination_grace_period_seconds"):
        return float(probe.termination_grace_period_seconds)
    return float(grace_seconds(pod))


async def stop_container(runtime: ContainerRuntime, cid: str, *, grace: float, log: Any) -> None:
    """SIGTERM, SIGKILL once `grace` seconds have passed, and wait for the exit."""
    try:
        await runtime.kill(cid, signal=signal.SIGTERM)
        try:
            async with asyncio.timeout(max(grace, 0)):
                await runtime.wait(cid)
            return
        except TimeoutError:
            log.info("pod.grace_period_expired", id=cid, grace_seconds=grace)
        await runtime.kill(cid, signal=signal.SIGKILL)
        async with asyncio.timeout(10):
            await runtime.wait(cid)
    except ContainerNotFound:
        return
    except (RuntimeError_, TimeoutError) as exc:
        log.warning("pod.container_stop_failed", id=cid, error=str(exc))
