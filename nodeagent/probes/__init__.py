"""Container probes: the vocabulary shared by the handlers and the per-container prober.

Vocabulary (Kubernetes' words):
- kind (`Kind`): liveness (failure restarts the container), readiness (the container's and the
  pod's Ready), startup (holds the other two until it first succeeds; failure restarts).
- handler: what performs one check of a probe's action (`exec`, `httpGet`, `tcpSocket`)
  against a `Target` and answers a `Result`; it never raises for a failed check, and a check
  that outlives the probe's timeout is a failure.
- target (`Target`): what a handler needs to reach one running container: its id (for exec),
  its init pid (its network namespace, for httpGet and tcpSocket), the pod IP if the pod has
  one, the container's named ports, and whether the pod uses the node's network.
- timing (`Timing`): a probe's initialDelay/timeout/period/thresholds, with Kubernetes'
  defaults wherever the spec left 0 (the control plane defaults them, the agent stays
  defensive).

Invariants: results are plain data; a `Result.message` reads like the kubelet's event text
without its "Liveness probe failed: " prefix (e.g. "HTTP probe failed with statuscode: 503").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from pilothouse.v1 import objects_pb2

DEFAULT_PERIOD_S = 10
DEFAULT_TIMEOUT_S = 1
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3


class Kind(enum.Enum):
    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    message: str = ""  # why it failed, the kubelet's words; empty on success

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS


SUCCESS = Result(Outcome.SUCCESS)


def failure(message: str) -> Result:
    return Result(Outcome.FAILURE, message)


@dataclass(frozen=True, slots=True)
class Target:
    container_id: str
    pid: int = 0  # the container's init process; 0: unknown (reach it from the node)
    pod_ip: str = ""
    ports: dict[str, int] = field(default_factory=dict)  # named container ports
    # The pod uses the node's network (agent --network host): only then may a check be made
    # from the agent's own namespace, when the container's process is not known (pid 0).
    host_network: bool = False


@dataclass(frozen=True, slots=True)
class Timing:
    initial_delay: float
    timeout: float
    period: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: objects_pb2.Probe, kind: Kind) -> Timing:
        """The probe's timing with Kubernetes' defaults; liveness and startup need 1 success."""
        success = probe.success_threshold or DEFAULT_SUCCESS_THRESHOLD
        if kind is not Kind.READINESS:
            success = 1
        return cls(
            initial_delay=max(probe.initial_delay_seconds, 0),
            timeout=probe.timeout_seconds if probe.timeout_seconds > 0 else DEFAULT_TIMEOUT_S,
            period=probe.period_seconds if probe.period_seconds > 0 else DEFAULT_PERIOD_S,
            success_threshold=max(success, 1),
            failure_threshold=max(probe.failure_threshold or DEFAULT_FAILURE_THRESHOLD, 1),
        )


class Handler(Protocol):
    async def check(self, probe: objects_pb2.Probe, target: Target, *, time_limit: float) -> Result:
        """One check of the probe's action; failures (and timeouts) are results, not raises."""
        ...


def has_action(probe: objects_pb2.Probe) -> bool:
    return (
        probe.HasField("exec")
        or probe.HasField("http_get")
        or probe.HasField("tcp_socket")
        or probe.HasField("grpc")
    )
