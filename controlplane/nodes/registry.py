"""The node registry: what RegisterNode and Heartbeat mean, over the ObjectStore.

Invariants:
- A node name belongs to one agent instance at a time (the Node's `pilothouse.io/agent-instance`
  annotation). Another instance is refused (`NodeTaken`) while the owner's last heartbeat is
  younger than the grace period, and takes the node over once it is older.
- Registration writes everything the agent reports (addresses, endpoint, capacity, allocatable,
  nodeInfo, labels) and sets Ready=False reason Fencing: the node syncer sets Ready=True once its
  first push to this agent succeeded (see `controlplane.nodes`). Spec (cordon, taints) and
  labels set by people survive re-registration; the agent's own labels win on conflict.
- A node sets only the labels `controlplane.nodes.labels` allows (NodeRestriction): its
  hostname label only to its own name, nothing under node-role.kubernetes.io/ or
  node-restriction.*; a registration reporting any other is refused whole (`LabelsForbidden`,
  PERMISSION_DENIED), so an admin's labels are never overwritten by a node.
- A beat message from the owner is recorded in memory at once (one read of the store's
  cached copy). The store is written only on a transition (a lost node goes back to
  Fencing), on changed capacity or pressure, and otherwise once per `status_interval()`
  (`persist_interval`, 10 s, longer in a large cluster: `MAX_PERSISTS_PER_S` writes a second
  in all, 100 s at 1,000 nodes, as Kubernetes refreshes an unchanged node status).
- An agent's open Heartbeats stream is its heartbeat (`hold`): the API server pings every
  connection each heartbeat interval and closes one whose ping goes unanswered for
  `ping_timeout` (answered by the agent's gRPC core: no Python per beat), so a node counts as
  heard *now* while a stream of its owner is open. The agent sends beat messages only when
  its status changes, or after `status_interval`. A stream silent for `WEDGED_AFTER` status
  intervals (gRPC answering while the agent is stuck) stops counting; one that ends counts as
  heard one interval before its end. So with the defaults (1 s, 3 s) a killed agent is
  NotReady 2 s after it died, a frozen or cut-off one after 3-5 s.
- A heartbeat from another instance, or for a node that does not exist, is refused
  (`NotRegistered`): the agent must register again (and may then be refused).
- Just after this process starts it has seen no beats: a Node already in the store counts as
  seen at start-up, so a restarted control plane gives every agent a full grace period.
- With several control-plane members an agent heartbeats to any of them: every accepted beat
  also goes to `leases` (`controlplane.nodes.leases`), which publishes it to the other members,
  and `last_seen` is the newest beat heard by any member.
- Every registered Node has a pod CIDR (`spec.podCIDR`, see `controlplane.nodes.podcidr`): the
  one it already has (it never changes while the Node exists), else the one its agent asked
  for if no other Node's overlaps it, else the lowest free block of the cluster CIDR. The
  choice is derived from the stored Nodes and written with the Node (compare-and-swap);
  registrations that choose one are serialized in this process (the others run side by
  side), so two Nodes never get the same block. An
  agent that asks for a range another Node holds, or for another range than its Node's, is
  refused (`PodCidrUnavailable`) with the reason.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import structlog

from controlplane.nodes import conditions, podcidr, reported
from controlplane.nodes import labels as node_labels
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from controlplane.nodes.leases import NodeLeases
from controlplane.objects import Invalid, ObjectStore
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.store import AlreadyExists, Conflict, NotFound
from pilothouse.kinds import Kind
from pilothouse.manifests import names
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

DEFAULT_GRACE_PERIOD = 3.0
DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_PERSIST_INTERVAL = 10.0
WEDGED_AFTER = 3  # status intervals a held stream may stay silent
MAX_PERSISTS_PER_S = 10.0  # heartbeat refreshes written a second, all nodes together
_ATTEMPTS = 5


class NodeTaken(Exception):
    """Another agent instance owns this node name and is still alive."""


class PodCidrUnavailable(NodeTaken):
    """The agent cannot have the pod CIDR it asked for (another Node holds it, or its Node
    already has another one), or none is free. A refusal like `NodeTaken` (the agent retries
    and logs the message), with the pod CIDR's reason."""


class LabelsForbidden(Exception):
    """The agent reported labels a node may not set on itself (see `controlplane.nodes.labels`)."""


class NotRegistered(Exception):
    """A heartbeat from an agent that does not own the node (or for no node): register again."""


@dataclass(frozen=True, slots=True)
class Registration:
    node: objects_pb2.Node
    heartbeat_interval: float
    status_interval: float  # see the module docstring


@dataclass(eq=False, slots=True)
class Stream:
    """One open Heartbeats stream of agent `instance` for node `name` (see `hold`)."""

    name: str
    instance: str


@dataclass(slots=True)
class _Beat:
    instance: str
    at: float


class NodeRegistry:
    """Register and heartbeat node agents; answers `last_seen` for the lifecycle controller."""

    def __init__(
        self,
        objects: ObjectStore,
        *,
        clock: Clock | None = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        persist_interval: float = DEFAULT_PERSIST_INTERVAL,
        pod_cidrs: podcidr.Allocator | None = None,
        leases: NodeLeases | None = None,
    ) -> None:
        self._objects = objects
        self._leases = leases
        self.pod_cidrs = pod_cidrs or podcidr.Allocator.of()
        # One allocating registration at a time: choosing a pod CIDR and writing it must not
        # interleave with another choice (registrations that allocate nothing do not wait).
        self._registering = asyncio.Lock()
        self._clock = clock or SystemClock()
        self.grace_period = grace_period
        self.heartbeat_interval = heartbeat_interval
        self.persist_interval = persist_interval
        self._beats: dict[str, _Beat] = {}
        self._streams: dict[str, list[Stream]] = {}
        self._status_intervals: dict[str, float] = {}  # answered at registration
        self._arriving: Counter[str] = Counter()  # registrations under way, by node
        self._started = self._clock.now()
        if leases is not None:
            leases.follow(self.streaming)

    @property
    def ping_timeout(self) -> float:
        """The API server's wait for a ping's answer: what the grace period leaves after one
        interval (2 s by default), at least one interval. Shorter ended healthy connections
        while a thousand agents reconnected at once on 2 cores (TLS handshakes delay answers)."""
        return max(self.heartbeat_interval, self.grace_period - self.heartbeat_interval)

    def status_interval(self) -> float:
        """How often an agent on a stream sends its status unchanged: as often as it is
        written (`persist_interval`, longer in a large cluster)."""
        return max(self.persist_interval, len(self._beats) / MAX_PERSISTS_PER_S)

    # ------------------------------------------------------------------ liveness

    def last_seen(self, name: str) -> float | None:
        """When this process, or any member (`leases`), last heard from the node's owner
        (None: not since it started); now while the owner's stream is open here, or while a
        registration of the node is under way (a busy control plane may take longer than the
        grace period to answer one)."""
        return self._clock.now() if name in self._arriving else self._heard(name)

    def _heard(self, name: str) -> float | None:
        beat = self._beats.get(name)
        heard = [beat.at] if beat is not None else []
        if beat is not None and self._holds(name, beat):
            heard.append(self._clock.now())
        if self._leases is not None and (elsewhere := self._leases.last_seen(name)) is not None:
            heard.append(elsewhere)
        return max(heard, default=None)

    def _last_alive(self, node: objects_pb2.Node) -> float:
        stored = conditions.heartbeat_time(node) or 0.0
        in_memory = self._heard(node.metadata.name) or 0.0
        return max(stored, in_memory, self._started)

    def streaming(self) -> list[str]:
        """The nodes heard now through their owner's open stream (published by `leases`)."""
        return [name for name in self._streams if self._holds(name, self._beats.get(name))]

    def _holds(self, name: str, beat: _Beat | None) -> bool:
        streams = self._streams.get(name)
        if not streams or beat is None:
            return False
        wedged = WEDGED_AFTER * self._status_intervals.get(name, self.status_interval())
        owned = any(stream.instance == beat.instance for stream in streams)
        return owned and self._clock.now() - beat.at <= wedged

    def hold(self, name: str, instance_id: str) -> Stream:
        """A Heartbeats stream of `instance_id` for `name` carried an accepted beat: the node
        is heard while it stays open (`release` when it ends)."""
        stream = Stream(name=name, instance=instance_id)
        self._streams.setdefault(name, []).append(stream)
        return stream

    def release(self, stream: Stream) -> None:
        """The stream ended: its node was last heard one heartbeat interval ago (the last
        ping it answered), unless something newer says otherwise."""
        streams = self._streams[stream.name]  # held once, released once
        streams.remove(stream)
        if not streams:
            del self._streams[stream.name]
        beat = self._beats.get(stream.name)
        if beat is None or beat.instance != stream.instance:
            return
        if any(other.instance == stream.instance for other in streams):
            return  # still heard through another stream
        at = self._clock.now() - self.heartbeat_interval
        if at > beat.at:
            beat.at = at
            if self._leases is not None:
                self._leases.beat(stream.name, at=at)

    # -------------------------------------------------------------- registration

    async def register(self, node: objects_pb2.Node, *, instance_id: str) -> Registration:
        """Create or take over the Node `node.metadata.name` for agent `instance_id`."""
        name = node.metadata.name
        problems = names.dns1123_subdomain(name) if name else ["a node name is required"]
        if problems:
            raise Invalid(f'node name "{name}": {"; ".join(problems)}')
        if not instance_id:
            raise Invalid(f'node "{name}": RegisterNode needs an instance id')
        refused = node_labels.forbidden(name, node.metadata.labels)
        if refused:
            log.warning("node.labels_forbidden", node=name, labels=",".join(refused))
            raise LabelsForbidden(f'node "{name}" may not set these labels: {"; ".join(refused)}')
        self._arriving[name] += 1
        try:
            registered = await self._written(node, instance_id)
        finally:
            self._arriving[name] -= 1
            if not self._arriving[name]:
                del self._arriving[name]
        self._beats[name] = _Beat(instance=instance_id, at=self._clock.now())
        status_interval = self._status_intervals[name] = self.status_interval()
        log.info(
            "node.registered",
            node=name,
            instance=instance_id,
            endpoint=conditions.endpoint(registered),
        )
        return Registration(
            node=registered,
            heartbeat_interval=self.heartbeat_interval,
            status_interval=status_interval,
        )

    async def _written(self, node: objects_pb2.Node, instance_id: str) -> objects_pb2.Node:
        """The Node as written for this registration, read again after a concurrent write."""
        name = node.metadata.name
        for attempt in range(_ATTEMPTS):
            try:
                current = await self._current(name)
                if current is None or not current.spec.pod_cidr:
                    async with self._registering:  # a pod CIDR to choose: one at a time
                        current = await self._current(name)
                        return await self._register_once(node, instance_id, current)
                return await self._register_once(node, instance_id, current)  # side by side
            except (Conflict, AlreadyExists, NotFound):
                # Someone wrote the node between our read and our write: read it again.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _current(self, name: str) -> objects_pb2.Node | None:
        try:
            return await self._objects.get(Kind.NODE, "", name)  # type: ignore[return-value]
        except NotFound:
            return None

    async def _register_once(
        self, node: objects_pb2.Node, instance_id: str, current: objects_pb2.Node | None
    ) -> objects_pb2.Node:
        name = node.metadata.name
        now = self._clock.now()
        if current is None:
            fresh = objects_pb2.Node()
            fresh.metadata.name = name
            fresh.spec.CopyFrom(node.spec)
            fresh.spec.pod_cidr = await self._pod_cidr(name, requested=node.spec.pod_cidr)
            reported.set_identity(fresh, node, instance_id)
            reported.set_status(fresh, node, now=now)
            return await self._objects.create(fresh)
        owner = conditions.instance_of(current)
        if owner and owner != instance_id:
            silent = now - self._last_alive(current)
            if silent < self.grace_period:
                raise NodeTaken(
                    f'node "{name}" is already registered by another agent (last heartbeat '
                    f"{silent:.1f} s ago); stop it or wait {self.grace_period - silent:.1f} s"
                )
            log.warning("node.taken_over", node=name, previous=owner, instance=instance_id)
        updated = objects_pb2.Node()
        updated.CopyFrom(current)
        reported.set_identity(updated, node, instance_id)
        requested = node.spec.pod_cidr
        if current.spec.pod_cidr:
            if requested and not podcidr.same_network(requested, current.spec.pod_cidr):
                raise PodCidrUnavailable(
                    f'node "{name}" has pod CIDR {current.spec.pod_cidr}, its agent asks for '
                    f"{requested}; a node's pod CIDR never changes: start the agent with "
                    f"--pod-cidr {current.spec.pod_cidr} (or without it), or delete the node"
                )
        else:
            updated.spec.pod_cidr = await self._pod_cidr(name, requested=requested)
        if updated.metadata != current.metadata or updated.spec != current.spec:
            updated = await self._objects.update(updated)
        reported.set_status(updated, node, now=now)
        return await self._objects.update_status(updated)

    async def _pod_cidr(self, name: str, *, requested: str) -> str:
        """The pod CIDR for a node that has none yet (see the module docstring)."""
        listed = await self._objects.list(Kind.NODE)
        taken = {n.metadata.name: n.spec.pod_cidr for n in listed.items}  # type: ignore[attr-defined]
        try:
            chosen = self.pod_cidrs.choose(name, requested=requested, taken=taken)
        except podcidr.InvalidCidr as error:
            raise Invalid(f'node "{name}": {error}') from None
        except podcidr.PodCidrError as error:
            raise PodCidrUnavailable(str(error)) from None
        log.info("node.pod_cidr", node=name, pod_cidr=chosen, requested=requested or None)
        return chosen

    # ---------------------------------------------------------------- heartbeats

    async def heartbeat(
        self, name: str, *, instance_id: str, status: objects_pb2.NodeStatus | None = None
    ) -> None:
        """Record a heartbeat of `instance_id` for node `name` (see the module's write rules)."""
        for attempt in range(_ATTEMPTS):
            # The first read may be the cache's copy (a thousand beats a second cost no etcd
            # round trip); a refusal is only ever made on a fresh one, and writes are CAS.
            fresh = attempt > 0
            try:
                current = await self._objects.get(Kind.NODE, "", name, fresh=fresh)
            except NotFound:
                if not fresh:
                    continue
                self._beats.pop(name, None)
                raise NotRegistered(f'node "{name}" is not registered; register again') from None
            if conditions.instance_of(current) != instance_id:
                if not fresh:
                    continue
                raise NotRegistered(
                    f'node "{name}" is registered by another agent instance; register again'
                )
            now = self._clock.now()
            self._beats[name] = _Beat(instance=instance_id, at=now)
            if self._leases is not None:
                self._leases.beat(name)
            updated = self._after_beat(current, status, now=now)
            if updated is None:
                return
            try:
                await self._objects.update_status(updated)
                return
            except Conflict:
                if attempt == _ATTEMPTS - 1:
                    raise
            except NotFound:
                self._beats.pop(name, None)
                raise NotRegistered(f'node "{name}" is not registered; register again') from None

    def _after_beat(
        self, current: objects_pb2.Node, status: objects_pb2.NodeStatus | None, *, now: float
    ) -> objects_pb2.Node | None:
        """The node to write after a heartbeat, or None when nothing needs writing."""
        ready = conditions.ready_condition(current)
        stored = conditions.heartbeat_time(current) or 0.0
        every = self.status_interval()
        if (
            ready is not None
            and not conditions.is_lost(current)
            and now - stored < every
            and not reported.news(current, status)
        ):
            return None  # the common beat: nothing copied, nothing written
        updated = objects_pb2.Node()
        updated.CopyFrom(current)
        if status is not None:
            reported.take(updated, status)
        if ready is None or conditions.is_lost(current):
            conditions.set_ready(
                updated,
                status=ReadyStatus.FALSE,
                reason=ReadyReason.FENCING,
                message=reported.RETURNED_MESSAGE,
                now=now,
                heartbeat=True,
            )
            log.info("node.returned", node=current.metadata.name)
            return updated
        if updated.status == current.status and now - stored < every:
            return None
        conditions.touch_heartbeat(updated, now=now)
        return updated
