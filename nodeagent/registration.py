"""Registration: the agent's side of the NodeRegistry: register this node, then heartbeat.

Invariants:
- Registration never gives up: while the control plane is unreachable, or refuses because
  another live agent holds the node name, it retries with capped exponential backoff and says
  so in the log (`registration.waiting`, once per cause, then quietly).
- Heartbeats go as messages of one Heartbeats stream per channel (`nodeagent.heartbeats`), or
  as Heartbeat calls to a control plane without it; either way with the same outcomes. On a
  stream the open stream is the heartbeat (the control plane pings the connection): a beat
  message is sent when the stream is opened, when the node's status changed (anything but
  heartbeat times), and otherwise once per status interval the registration answered.
- Losing the control plane never touches pods: the agent keeps running what it was last told
  to run. Heartbeats that cannot be delivered are retried at the heartbeat interval; when the
  control plane answers that this agent is not (or no longer) the node's owner, it registers
  again. The control plane decides what the agent runs next (fencing: its first SyncPods after
  a registration lists exactly the pods still bound to this node).
- The instance id identifies this agent's state (see `load_instance_id`): an agent restarted
  on the same state directory is the same instance and takes its node back at once; another
  agent with the same node name has to wait until this one has been silent for the grace
  period.
- With TLS (`tls`, the node's credentials from `nodeagent.join.NodeCertificates`), every call
  is mutual TLS with the node certificate, and the control plane's certificate is checked
  against the cluster CA. A renewed certificate is picked up by opening a new channel at the
  next heartbeat, without registering again.
- Several control-plane members (`server` "a:7070,b:7070,c:7070"): the agent registers with
  and heartbeats to one of them; when that member is unreachable or does not answer within
  the call's deadline, the agent moves to the next member at once (a new channel) and sends
  the same call there, without waiting for the next heartbeat. Any member records the beat
  for the leader (`controlplane.nodes.leases`). With several members the agent pings its
  member's connection every `PING_INTERVAL` (HTTP/2 pings, answered by gRPC's core): one that
  does not answer within `PING_TIMEOUT` ends the stream, and the agent moves on.
- The node's pod CIDR: the agent asks for the one it has (`pod_cidr`, "" for none) in every
  registration, and hands what the control plane answers (the registered Node, whose
  `spec.podCIDR` is the range it allocated or kept) to `on_registered` before it heartbeats.
  A refusal of the range it asked for (another node holds it) is logged with the control
  plane's reason and retried like any refusal: the range may become free.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
import structlog

from nodeagent.heartbeats import BeatSender
from nodeagent.state.quarantine import quarantine
from pilothouse import credentials as tls_credentials
from pilothouse.client import failover
from pilothouse.process.pings import ping_options
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

INSTANCE_FILE = "agent.instance"
INITIAL_BACKOFF = 0.2
MAX_BACKOFF = 5.0
REFUSED_RETRY = 1.0
CALL_TIMEOUT = 5.0  # s a registration, or a beat, waits for its answer
RETRY_WHILE_FAILING = 0.25  # s between heartbeats while they fail (a healed link is seen soon)
PING_INTERVAL = 1.0  # s, with several members: how often the member's connection is pinged
PING_TIMEOUT = 2.0  # s without an answer: the member is gone
RECONNECT_BACKOFF_MS = (1000, 5000)  # first and longest wait before connecting again
_REREGISTER = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class _Beat(enum.Enum):
    """Why heartbeating on one channel ended."""

    REREGISTER = "reregister"  # the control plane no longer knows this agent as the owner
    RENEWED = "renewed"  # new node credentials: a new channel
    MOVED = "moved"  # the member stopped answering: the next one, a new channel


def load_instance_id(state_dir: Path) -> str:
    """This agent state's instance id: read from `<state-dir>/agent.instance`, made once."""
    path = state_dir / INSTANCE_FILE
    try:
        text = path.read_text().strip()
        if text:
            uuid.UUID(text)  # made by uuid4 below: anything else is damage
    except FileNotFoundError:
        text = ""
    except (OSError, ValueError) as exc:  # ValueError: bad UTF-8, or not a uuid
        quarantine(path, error=exc, instead="a new instance id: the node registers (and is fenced)")
        text = ""
    if text:
        return text
    text = str(uuid.uuid4())
    state_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text + "\n")
    temporary.replace(path)
    return text


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"agent address {address!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class Registration:
    """A runnable: registers the node with the control plane at `server`, then heartbeats.

    `node_status` gives what the agent reports about itself (capacity, allocatable, nodeInfo);
    `agent_address` is where the control plane reaches this agent's gRPC API ("HOST:PORT");
    `credentials` (plain gRPC channel credentials) or `tls` (called for each new channel, so a
    renewed node certificate is used once it exists) secure the channel to the control plane.
    `pod_cidr` gives the range to ask for ("" to let the control plane choose);
    `on_registered` receives the Node as registered (with the pod CIDR it was given).
    """

    name = "registration"

    def __init__(
        self,
        *,
        server: str,
        node_name: str,
        instance_id: str,
        node_status: Callable[[], objects_pb2.NodeStatus],
        agent_address: str,
        labels: Mapping[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        tls: Callable[[], tls_credentials.TlsMaterial] | None = None,
        pod_cidr: Callable[[], str] = lambda: "",
        on_registered: Callable[[objects_pb2.Node], None] | None = None,
    ) -> None:
        self.server = server
        self.servers = failover.split(server)
        self._current = 0  # the member in use (index in `servers`)
        self.node_name = node_name
        self.instance_id = instance_id
        self._node_status = node_status
        self._host, self._port = split_address(agent_address)
        self._labels = dict(labels or {})
        self._credentials = credentials
        self._tls = tls
        self._pod_cidr = pod_cidr
        self._on_registered = on_registered
        self.registered = asyncio.Event()
        self.status_interval = 0.0  # as registration answered (0: a message every beat)

    def node(self) -> objects_pb2.Node:
        """The Node as this agent reports it."""
        node = objects_pb2.Node()
        node.metadata.name = self.node_name
        node.metadata.labels.update(self._labels)
        node.spec.pod_cidr = self._pod_cidr()
        node.status.CopyFrom(self._node_status())
        del node.status.addresses[:]
        node.status.addresses.add(type="InternalIP", address=self._host)
        node.status.addresses.add(type="Hostname", address=self.node_name)
        node.status.daemon_endpoints.kubelet_endpoint.port = self._port
        return node

    async def run(self) -> None:
        interval: float | None = None  # None: (re)register before heartbeating
        beat_now = False  # after moving to another member: heartbeat there at once
        while True:
            material = self._tls() if self._tls is not None else None
            async with self._channel(material) as channel:
                stub = api_grpc.NodeRegistryStub(channel)
                while True:
                    if interval is None:
                        interval = await self._register(stub)
                        if interval is None:
                            break  # unreachable: the next member, a new channel
                    outcome = await self._heartbeat(stub, interval, material, now=beat_now)
                    beat_now = False
                    if outcome is _Beat.REREGISTER:
                        interval = None
                    elif outcome is _Beat.MOVED:
                        beat_now = True
                        break
                    else:
                        break  # new credentials: a new channel, same registration

    @property
    def member(self) -> str:
        """The control-plane member in use."""
        return self.servers[self._current]

    def _move_on(self, error: grpc.aio.AioRpcError) -> bool:
        """After an unreachable member: use the next one (True), if there is another."""
        if len(self.servers) == 1 or error.code() not in _UNREACHABLE:
            return False
        previous = self.member
        self._current = (self._current + 1) % len(self.servers)
        log.info("registration.member_changed", node=self.node_name, old=previous, new=self.member)
        return True

    def _channel(self, material: tls_credentials.TlsMaterial | None) -> grpc.aio.Channel:
        # Back within 5 s of the control plane (a restart): gRPC's own reconnect backoff grows
        # to minutes, longer than a restarted control plane waits (its RECONNECT_ALLOWANCE);
        # gRPC's jitter spreads a thousand agents' attempts over that time.
        options: list[tuple[str, int]] = [
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
        ]
        if len(self.servers) > 1:  # a member that stops answering is left at once
            options += ping_options(
                interval_ms=round(PING_INTERVAL * 1000), timeout_ms=round(PING_TIMEOUT * 1000)
            )
        if material is not None:
            return tls_credentials.secure_channel(self.member, material, options=options)
        if self._credentials is not None:
            return grpc.aio.secure_channel(self.member, self._credentials, options=options)
        return grpc.aio.insecure_channel(self.member, options=options)

    async def _register(self, stub: api_grpc.NodeRegistryStub) -> float | None:
        """The heartbeat interval once registered; None when this member is unreachable and
        another one should be tried."""
        backoff = INITIAL_BACKOFF
        last_cause: str | None = None
        while True:
            request = api.RegisterNodeRequest(node=self.node(), instance_id=self.instance_id)
            try:
                response = await stub.RegisterNode(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                if self._move_on(error):
                    return None
                cause, delay, message = self._why(error, backoff)
                if cause != last_cause:
                    log.warning(
                        "registration.waiting",
                        node=self.node_name,
                        server=self.server,
                        reason=message,
                        retry_in=round(delay, 2),
                    )
                    last_cause = cause
                else:
                    log.debug("registration.retrying", node=self.node_name, reason=message)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            interval = max(response.heartbeat_interval_ms, 100) / 1000
            self.status_interval = max(response.status_interval_ms, 0) / 1000
            if self._on_registered is not None:
                self._on_registered(response.node)
            self.registered.set()
            log.info(
                "node.registered",
                node=self.node_name,
                server=self.server,
                instance=self.instance_id,
                heartbeat_interval=interval,
                pod_cidr=response.node.spec.pod_cidr or None,
            )
            return interval

    def _why(self, error: grpc.aio.AioRpcError, backoff: float) -> tuple[str, float, str]:
        code = error.code()
        if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
            return "refused", min(backoff, REFUSED_RETRY), error.details() or code.name
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return (
                "unreachable",
                backoff,
                f"the control plane at {self.server} is unreachable ({code.name}); "
                "pods keep running meanwhile",
            )
        return code.name, backoff, f"{code.name}: {error.details()}"

    async def _heartbeat(
        self,
        stub: api_grpc.NodeRegistryStub,
        interval: float,
        material: tls_credentials.TlsMaterial | None,
        *,
        now: bool = False,
    ) -> _Beat:
        """Heartbeat every `interval` (the first one at once with `now`) until the control
        plane asks for a new registration, the node's credentials were renewed, or the member
        stopped answering and the next one is to be used."""
        failing = False
        next_beat = time.monotonic() + (0.0 if now else interval)
        beats = BeatSender(stub)  # one stream for the beats of this channel
        sent: tuple[bytes, float] | None = None  # the status last sent on the stream, and when
        try:
            while True:
                if self._tls is not None and self._tls() != material:
                    log.info("registration.credentials_renewed", node=self.node_name)
                    return _Beat.RENEWED
                await asyncio.sleep(max(next_beat - time.monotonic(), 0.0))
                next_beat += interval
                if next_beat < time.monotonic():  # fell behind (a stall): do not burst
                    next_beat = time.monotonic() + interval
                status = self._node_status()
                news = _news(status)
                if (
                    beats.streaming
                    and sent is not None
                    and sent[0] == news
                    and time.monotonic() - sent[1] < self.status_interval
                ):
                    continue  # the open stream is the heartbeat
                request = api.HeartbeatRequest(
                    node_name=self.node_name, instance_id=self.instance_id, status=status
                )
                try:
                    # A late answer is waited for: a control plane that has just started
                    # answers a thousand reconnecting agents late, and a beat given up and
                    # sent again on a new stream only adds to its load (a member that stopped
                    # answering is left sooner: its connection's pings go unanswered).
                    await beats.send(request, deadline_s=max(interval, CALL_TIMEOUT))
                    sent = (news, time.monotonic())
                except grpc.aio.AioRpcError as error:
                    if error.code() in _REREGISTER:
                        log.warning(
                            "registration.lost",
                            node=self.node_name,
                            reason=error.details() or error.code().name,
                        )
                        self.registered.clear()
                        return _Beat.REREGISTER
                    if self._move_on(error):
                        return _Beat.MOVED
                    if not failing:
                        log.warning(
                            "heartbeat.failed",
                            node=self.node_name,
                            server=self.server,
                            error=f"{error.code().name}: {error.details()}",
                            note="pods keep running; retrying",
                        )
                    failing = True
                    # Heard from again within a fraction of a beat once the link is back: the
                    # control plane fences the node as soon as it hears from it.
                    next_beat = min(next_beat, time.monotonic() + RETRY_WHILE_FAILING)
                    continue
                if failing:
                    log.info("heartbeat.restored", node=self.node_name, server=self.server)
                    failing = False
        finally:
            beats.close()


def _news(status: objects_pb2.NodeStatus) -> bytes:
    """What the control plane learns from a status: all of it but heartbeat times."""
    copy = objects_pb2.NodeStatus()
    copy.CopyFrom(status)
    for condition in copy.conditions:
        condition.ClearField("last_heartbeat_time")
    return copy.SerializeToString(deterministic=True)
