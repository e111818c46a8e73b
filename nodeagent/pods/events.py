"""Events on the agent: what happened to a pod's containers, or to the node itself (image
garbage collection), in the kubelet's words, kept until the control plane has been told.

Vocabulary (Kubernetes'):
- reason (`Reason`): the kubelet's event reasons (Pulling, Pulled, Failed, BackOff, Created,
  Started, Killing, Unhealthy); type (`EventType`): Normal or Warning.
- involved object: the pod (kind, namespace, name, uid), with the field path
  `spec.containers{<name>}` when the event is about one container; or the node (kind Node,
  its name; no uid: the agent does not know the Node object's).
- source: component `pilothouse-agent`, host = the pod's node (the node).

Invariants:
- `PodEvents` keeps at most `capacity` undelivered events per pod (`NodeEvents` for the
  node). Recording an event equal to
  one that waits (same container, type, reason and message) merges into it (count + 1, its
  lastTimestamp moves); when full, the oldest waiting event is dropped.
- `drain()` hands the waiting events over and forgets them: each is delivered at most once.
  Events are best effort: recording never blocks, never raises, and never holds up the pod.
- Events carry no name: the control plane names (and merges) them. Messages are cut to
  `MAX_MESSAGE` characters.
"""

from __future__ import annotations

import asyncio
import enum
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from nodeagent.probes import Handler, Kind, Result, Target
from pilothouse.v1 import objects_pb2

COMPONENT = "pilothouse-agent"
DEFAULT_CAPACITY = 20
MAX_MESSAGE = 1024  # characters; a longer message (an exec probe's output) is cut


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(enum.Enum):
    PULLING = "Pulling"
    PULLED = "Pulled"
    FAILED = "Failed"
    BACK_OFF = "BackOff"
    CREATED = "Created"
    STARTED = "Started"
    KILLING = "Killing"
    UNHEALTHY = "Unhealthy"
    ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
    FAILED_CREATE_POD_SANDBOX = "FailedCreatePodSandBox"
    EVICTED = "Evicted"
    FAILED_MOUNT = "FailedMount"
    FAILED_POST_START_HOOK = "FailedPostStartHook"
    FAILED_PRE_STOP_HOOK = "FailedPreStopHook"
    FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET = "FailedToRetrieveImagePullSecret"


def field_path(container: str) -> str:
    """The involvedObject.fieldPath of an event about one container of the pod."""
    return f"spec.containers{{{container}}}" if container else ""


def duration_text(seconds: float) -> str:
    """A duration as Go prints it, shortened: 190ms, 1.25s, 2m3.4s."""
    if seconds < 1:
        return f"{max(round(seconds * 1000), 0)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s"


def _timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


class _Events:
    """The undelivered events of one object (see the module docstring)."""

    def __init__(
        self,
        involved: objects_pb2.ObjectReference,
        *,
        host: str,
        capacity: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._involved = involved
        self._source = objects_pb2.EventSource(component=COMPONENT, host=host)
        self._capacity = max(capacity, 1)
        self._clock = clock
        self._waiting: OrderedDict[tuple[str, str, str, str], objects_pb2.Event] = OrderedDict()
        self.dropped = 0  # events lost because too many waited (for logs and tests)

    def __len__(self) -> int:
        return len(self._waiting)

    def record(
        self, *, container: str = "", type: EventType, reason: enum.Enum, message: str
    ) -> None:
        """Note that `reason: message` happened (to `container`, or to the whole pod)."""
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        key = (container, type.value, reason.value, message)
        now = _timestamp(self._clock())
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.count += 1
            waiting.last_timestamp.CopyFrom(now)
            return
        if len(self._waiting) >= self._capacity:
            self._waiting.popitem(last=False)
            self.dropped += 1
        event = objects_pb2.Event(
            api_version="v1",
            kind="Event",
            involved_object=self._involved,
            reason=reason.value,
            message=message,
            source=self._source,
            count=1,
            type=type.value,
        )
        event.metadata.namespace = self._involved.namespace
        event.involved_object.field_path = field_path(container)
        event.first_timestamp.CopyFrom(now)
        event.last_timestamp.CopyFrom(now)
        self._waiting[key] = event

    def drain(self) -> list[objects_pb2.Event]:
        """The waiting events, oldest first; they are forgotten here."""
        out = list(self._waiting.values())
        self._waiting.clear()
        return out


class PodEvents(_Events):
    """The undelivered events of one pod."""

    def __init__(
        self,
        pod: objects_pb2.Pod,
        *,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        involved = objects_pb2.ObjectReference(
            api_version="v1",
            kind="Pod",
            namespace=pod.metadata.namespace or "default",
            name=pod.metadata.name,
            uid=pod.metadata.uid,
        )
        super().__init__(involved, host=pod.spec.node_name, capacity=capacity, clock=clock)


class NodeEvents(_Events):
    """The undelivered events about the node itself; `wait()` returns once some wait."""

    def __init__(
        self,
        node: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        involved = objects_pb2.ObjectReference(api_version="v1", kind="Node", name=node)
        super().__init__(involved, host=node, capacity=capacity, clock=clock)
        self._added = asyncio.Event()

    def record(
        self, *, container: str = "", type: EventType, reason: enum.Enum, message: str
    ) -> None:
        super().record(container=container, type=type, reason=reason, message=message)
        self._added.set()

    async def wait(self) -> None:
        while not len(self):
            self._added.clear()
            await self._added.wait()


class ProbeEvents:
    """A probe `Handler` that records each failed check as a Warning Unhealthy event about the
    container ("Liveness probe failed: HTTP probe failed with statuscode: 500"), calls
    `on_event`, and otherwise answers exactly what the wrapped handler answers.

    `probes` maps each kind to the very Probe message the prober checks (its `probes`), which
    is how a check is told apart from another kind's with an identical spec.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        events: PodEvents,
        container: str,
        on_event: Callable[[], None],
    ) -> None:
        self._handler = handler
        self._events = events
        self._container = container
        self._on_event = on_event
        self.probes: dict[Kind, objects_pb2.Probe] = {}

    def _kind(self, probe: objects_pb2.Probe) -> Kind | None:
        for kind, known in self.probes.items():
            if known is probe:
                return kind
        return next((k for k, known in self.probes.items() if known == probe), None)

    async def check(self, probe: objects_pb2.Probe, target: Target, *, time_limit: float) -> Result:
        try:
            result = await self._handler.check(probe, target, time_limit=time_limit)
        except Exception as exc:
            self._unhealthy(probe, f"probe error: {exc}")
            raise
        if not result.ok:
            self._unhealthy(probe, result.message)
        return result

    def _unhealthy(self, probe: objects_pb2.Probe, message: str) -> None:
        kind = self._kind(probe)
        what = kind.value if kind is not None else "Container"
        self._events.record(
            container=self._container,
            type=EventType.WARNING,
            reason=Reason.UNHEALTHY,
            message=f"{what} probe failed: {message}",
        )
        self._on_event()
