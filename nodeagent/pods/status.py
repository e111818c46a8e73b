"""Pod status, Kubernetes-style, computed from what the worker observed of each container.

Vocabulary:
- `ContainerRecord`: the worker's observation of one container of the pod: its current state
  (`Waiting`, `Running` or `Terminated`), the last termination, restart count, readiness.
- reasons (`WaitingReason`, `TerminatedReason`) are the words `kubectl get pods` shows.

Invariants: `pod_status` is pure over the records and the pod; phase follows the kubelet's
`getPhase`: Pending while a container waits without ever having run, Running while any runs
(or will be restarted), Succeeded when all ended with 0 and none restarts, Failed when all
ended, one non-zero, and none restarts. While init containers run the pod is Pending
(Initialized False, "containers with incomplete status"); an init container that failed for
good (restartPolicy Never) makes it Failed. Sidecars count for readiness, not for phase.
Condition transition times only move when a condition's status changes (`Conditions`
remembers them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from nodeagent.pods.restart import RestartPolicy
from pilothouse.conditions import find_condition, set_condition
from pilothouse.v1 import objects_pb2


class WaitingReason(enum.Enum):
    CONTAINER_CREATING = "ContainerCreating"
    ERR_IMAGE_PULL = "ErrImagePull"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    CREATE_CONTAINER_ERROR = "CreateContainerError"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    POD_INITIALIZING = "PodInitializing"  # waits for the pod's init containers


class TerminatedReason(enum.Enum):
    COMPLETED = "Completed"
    ERROR = "Error"
    OOM_KILLED = "OOMKilled"

    @classmethod
    def of(cls, exit_code: int, *, oom_killed: bool) -> TerminatedReason:
        if oom_killed:
            return cls.OOM_KILLED
        return cls.COMPLETED if exit_code == 0 else cls.ERROR


class Phase(enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: WaitingReason
    message: str = ""


@dataclass(frozen=True, slots=True)
class Running:
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Terminated:
    exit_code: int
    reason: TerminatedReason
    started_at: datetime | None
    finished_at: datetime | None
    container_id: str
    signal: int = 0
    message: str = ""


State = Waiting | Running | Terminated


@dataclass(slots=True)
class ContainerRecord:
    name: str
    image: str
    state: State = field(default_factory=lambda: Waiting(WaitingReason.CONTAINER_CREATING))
    last_terminated: Terminated | None = None
    restart_count: int = 0
    image_id: str = ""
    container_id: str = ""  # the current attempt's container
    ready: bool = False
    started: bool = False
    probe_message: str = ""  # why a running container is not ready (its probe's failure)


def _ts(when: datetime | None) -> Timestamp:
    ts = Timestamp()
    if when is not None:
        ts.FromDatetime(when)
    return ts


def _state_message(state: State | None, out: objects_pb2.ContainerState) -> None:
    match state:
        case Waiting(reason=reason, message=message):
            out.waiting.reason = reason.value
            out.waiting.message = message
        case Running(started_at=started):
            out.running.started_at.CopyFrom(_ts(started))
        case Terminated() as t:
            out.terminated.exit_code = t.exit_code
            out.terminated.signal = t.signal
            out.terminated.reason = t.reason.value
            out.terminated.message = t.message
            if t.started_at is not None:
                out.terminated.started_at.CopyFrom(_ts(t.started_at))
            if t.finished_at is not None:
                out.terminated.finished_at.CopyFrom(_ts(t.finished_at))
            out.terminated.container_id = t.container_id
        case None:
            pass


def container_status(record: ContainerRecord) -> objects_pb2.ContainerStatus:
    out = objects_pb2.ContainerStatus(
        name=record.name,
        ready=record.ready,
        restart_count=record.restart_count,
        image=record.image,
        image_id=record.image_id,
        container_id=record.container_id,
        started=record.started,
    )
    _state_message(record.state, out.state)
    _state_message(record.last_terminated, out.last_state)
    return out


def phase(policy: RestartPolicy, records: list[ContainerRecord]) -> Phase:
    running = stopped = succeeded = waiting = 0
    for r in records:
        match r.state:
            case Running():
                running += 1
            case Terminated(exit_code=code):
                stopped += 1
                succeeded += code == 0
            case Waiting():
                if r.last_terminated is not None:
                    stopped += 1
                else:
                    waiting += 1
    if waiting:
        return Phase.PENDING
    if running:
        return Phase.RUNNING
    if records and stopped == len(records):
        if policy is RestartPolicy.ALWAYS:
            return Phase.RUNNING
        if succeeded == stopped:
            return Phase.SUCCEEDED
        if policy is RestartPolicy.NEVER:
            return Phase.FAILED
        return Phase.RUNNING
    return Phase.PENDING


class Conditions:
    """The pod's conditions, keeping each one's last transition time (`set_condition`)."""

    TYPES = ("PodScheduled", "Initialized", "ContainersReady", "Ready")

    def __init__(self) -> None:
        self._current: list[objects_pb2.Condition] = []
        self.version = 0  # bumps whenever a condition's status or reason changes

    def snapshot(self) -> dict[str, list[str]]:
        """What `restore` needs (JSON-ready): status, reason, transition time per condition."""
        return {
            c.type: [c.status, c.reason, c.last_transition_time.ToDatetime(UTC).isoformat()]
            for c in self._current
        }

    def restore(self, snapshot: object) -> None:
        """Continue from a snapshot (a restarted agent keeps the transition times)."""
        if not isinstance(snapshot, dict):
            return
        for kind, value in snapshot.items():
            try:
                status, reason, since = value
                restored = objects_pb2.Condition(
                    type=str(kind), status=str(status), reason=str(reason)
                )
                restored.last_transition_time.FromDatetime(datetime.fromisoformat(since))
            except (TypeError, ValueError):
                continue
            self._current = [c for c in self._current if c.type != restored.type] + [restored]

    def update(
        self, now: datetime, values: dict[str, tuple[bool, str]]
    ) -> list[objects_pb2.Condition]:
        out = []
        for kind in self.TYPES:
            ok, reason = values[kind]
            status = "True" if ok else "False"
            wanted = objects_pb2.Condition(type=kind, status=status, reason=reason)
            before = find_condition(self._current, kind)
            self._current = set_condition(self._current, wanted, now=now, update_time=False)
            condition = find_condition(self._current, kind)
            if condition is not before:
                self.version += 1
            copy = objects_pb2.Condition()
            copy.CopyFrom(condition)
            out.append(copy)
        return out


def pod_status(
    *,
    spec: objects_pb2.PodSpec,
    records: list[ContainerRecord],
    conditions: Conditions,
    now: datetime,
    start_time: datetime,
    host_ip: str,
    generation: int,
    pod_ip: str = "",
    init_records: list[ContainerRecord] | None = None,
    initialized: bool = True,
    init_failed: bool = False,
) -> objects_pb2.PodStatus:
    """`init_records`: the init containers' (spec order); `initialized`: every one is done
    (sidecars started); `init_failed`: one failed and will not run again."""
    init_records = init_records or []
    sidecars = {c.name for c in spec.init_containers if c.restart_policy == "Always"}
    current = phase(RestartPolicy.parse(spec.restart_policy), records)
    if init_failed:
        current = Phase.FAILED
    elif not initialized:
        current = Phase.PENDING
    ready_set = records + [r for r in init_records if r.name in sidecars]
    all_ready = initialized and bool(ready_set) and all(r.ready for r in ready_set)
    not_ready = [r.name for r in ready_set if not r.ready]
    why = "" if all_ready else "ContainersNotReady"
    if current in (Phase.SUCCEEDED, Phase.FAILED):
        why = "PodCompleted"
    status = objects_pb2.PodStatus(
        phase=current.value,
        host_ip=host_ip,
        pod_ip=pod_ip,
        observed_generation=generation,
        container_statuses=[container_status(r) for r in records],
        init_container_statuses=[container_status(r) for r in init_records],
        conditions=conditions.update(
            now,
            {
                "PodScheduled": (True, ""),
                "Initialized": (initialized, "" if initialized else "ContainersNotInitialized"),
                "ContainersReady": (all_ready, why),
                "Ready": (all_ready, why),
            },
        ),
    )
    if not_ready and current is not Phase.SUCCEEDED and current is not Phase.FAILED:
        message = f"containers with unready status: [{' '.join(not_ready)}]"
        probes = [
            f"{r.name}: {r.probe_message}" for r in records if not r.ready and r.probe_message
        ]
        if probes:  # the kubelet would say it in an event; we say it where describe shows it
            message += f" ({'; '.join(probes)})"
        status.conditions[2].message = message
        status.conditions[3].message = status.conditions[2].message
    if not initialized:
        pending = [
            r.name for r in init_records if not (r.name in sidecars and r.started) and not _done(r)
        ]
        status.conditions[1].message = f"containers with incomplete status: [{' '.join(pending)}]"
    status.start_time.CopyFrom(_ts(start_time))
    status.qos_class = qos_class(spec)
    return status


def _done(record: ContainerRecord) -> bool:
    return isinstance(record.state, Terminated) and record.state.exit_code == 0


def qos_class(spec: objects_pb2.PodSpec) -> str:
    """Kubernetes' QoS class of a pod spec."""
    containers = list(spec.containers)
    has_any = any(c.resources.limits or c.resources.requests for c in containers)
    if not has_any:
        return "BestEffort"
    guaranteed = all(
        {"cpu", "memory"} <= set(c.resources.limits)
        and all(
            c.resources.requests.get(k, c.resources.limits[k]) == c.resources.limits[k]
            for k in ("cpu", "memory")
        )
        for c in containers
    )
    return "Guaranteed" if guaranteed else "Burstable"
