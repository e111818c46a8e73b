"""`pilothouse agent`: wires runtime → images → pod manager → gRPC API, and runs them.

The wiring is explicit and happens only here. Order matters:
1. the runtime and image service first: the pod manager re-adopts containers from them;
2. the pod manager starts (re-adoption) before the API serves, so the first ListPods or
   WatchPods already shows the re-adopted pods with their restart counts;
3. `agent.addr` is written once the API serves, and removed on the way out;
4. with `--server`, the node registers (and then heartbeats) only once the API serves, since
   the control plane starts pushing pods to it as soon as it is registered;
   the pod network (`--network cni` without `--pod-cidr`) is bound to the pod CIDR that the
   registration returns before anything else happens after it, since pods pushed next need
   addresses from it (a pod that comes earlier waits for it, see `network.sandbox`);
0. before all of that, with `--server` (unless `--insecure`), the node's credentials: loaded
   from `<state-dir>/pki/`, or obtained by joining with the token (`--token-file` or
   `--token -`) and `--ca-cert-hash`. A join that
   fails ends the agent at once with one line saying why (wrong or expired token, wrong CA
   hash, control plane unreachable), before any container is touched. The agent's own server
   then requires mutual TLS and admits only the control plane's identity, and the
   certificate is renewed in the background (`certs` part).
5. image garbage collection (`image-gc` part, by disk usage) runs only among the parts, after
   re-adoption: what the re-adopted containers use is on disk then, and is never collected;
   what it does is said as events about the node, which go out on WatchPods.

SIGTERM/SIGINT stop serving and supervising, but LEAVE CONTAINERS RUNNING: they outlive the
agent by design, and the next agent re-adopts them. A runnable that ends on its own is a bug:
the process then exits non-zero.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Sequence

import structlog

from nodeagent import config as settings
from nodeagent import metrics
from nodeagent.api import nodeinfo
from nodeagent.api.server import agent_server
from nodeagent.api.servicer import NodeAgentServicer
from nodeagent.api.streams import NodeUsageServicer, PodStreamsServicer
from nodeagent.discovery.podfiles import PodFiles
from nodeagent.discovery.sync import ServiceSync, route_device
from nodeagent.images import ImageService
from nodeagent.images.diskgc import GcEvent, ImageGarbageCollector
from nodeagent.join import JoinError, NodeCertificates
from nodeagent.network import routes as pod_routes
from nodeagent.network.sandbox import Mode, PodNetworks
from nodeagent.pods import claims
from nodeagent.pods.events import EventType, NodeEvents
from nodeagent.pods.eviction import EvictionManager
from nodeagent.pods.manager import PodManager
from nodeagent.pods.security import NodePolicy
from nodeagent.pods.usage import UsageSampler
from nodeagent.pods.worker import WorkerConfig
from nodeagent.registration import Registration, load_instance_id
from nodeagent.runtime import ContainerRuntime, logrotation
from pilothouse import credentials, logs, pki
from pilothouse.process import addressfile, signals
from pilothouse.process.grpcserver import BindError
from pilothouse.process.runnable import Runnable, RunnableExited, Task, run_all
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


def make_runtime(config: settings.Config) -> ContainerRuntime:
    if config.runtime == "fake":
        from nodeagent.runtime.fake import FakeRuntime

        return FakeRuntime()
    from nodeagent.runtime.runc import RuncRuntime

    return RuncRuntime(config.state_dir / "runtime", cgroup_parent=config.cgroup_parent)


def make_images(config: settings.Config) -> ImageService:
    if config.runtime == "fake":
        from nodeagent.images.fake import FakeImageService

        return FakeImageService()
    from nodeagent.images.store import LocalImageService
    from pilothouse.oci.registries import RegistriesConfig

    registries = RegistriesConfig.load(config.registries) if config.registries else None
    return LocalImageService(config.state_dir, registries=registries)


class JoinFailed(Exception):
    """The node has no credentials and could not join; the message is for the operator."""


async def node_certificates(config: settings.Config) -> NodeCertificates | None:
    """The node's credentials, joined now if need be; None when not secure."""
    if not config.secure:
        if not config.server:
            log.info("agent.standalone", note="no --server: plaintext API, no control plane")
        else:
            log.warning("agent.insecure", note="plaintext, no authentication: dev only")
        return None
    certs = NodeCertificates(
        config.pki_dir,
        node_name=config.name,
        server=config.server,
        join_server=config.join_server,
        token=config.token,
        token_file=config.token_file,
        ca_cert_hash=config.ca_cert_hash,
    )
    try:
        await certs.ensure()
    except JoinError as error:
        raise JoinFailed(str(error)) from None
    return certs


async def serve(config: settings.Config) -> int:
    """Run the agent until cancelled (0) or until a part fails (1)."""
    # Root's only (0700, also when an older agent made it 0755): it holds pods' env in the
    # desired set and in bundles' config.json, and their logs (issue 11).
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config.state_dir.chmod(0o700)
    certs = await node_certificates(config)
    runtime = make_runtime(config)
    images = make_images(config)
    routing = _route_mode(config)
    networks = PodNetworks(
        mode=Mode(config.network),
        mtu=await _pod_mtu(config, routing),
        state_dir=config.state_dir,
        node_ip=config.node_ip,
        pod_cidr=config.pod_cidr or None,
        plugin_dir=config.cni_plugin_dir,
        pod_cidr_from_registration=bool(config.server),
    )
    # Routes to the other nodes' pods; the pod CIDR is read at each push (bound by then).
    routes = (
        pod_routes.PeerRoutes(
            node=config.name,
            node_ip=config.node_ip,
            mode=routing,
            own_pod_cidr=lambda: networks.pod_cidr,
        )
        if routing is not None
        else None
    )
    # The node's Services (nftables) and DNS, with a pod network to serve (cni mode).
    services = await _service_sync(config, networks)
    pod_files = (
        PodFiles(
            sync=services, resolv_conf=config.resolv_conf, host_network=config.network == "host"
        )
        if config.runtime != "fake"
        else None
    )
    pods = PodManager(
        runtime=runtime,
        images=images,
        config=WorkerConfig(
            state_dir=config.state_dir,
            pids_limit=config.pids_limit,
            host_ip=config.node_ip,
            restart_backoff=config.backoff,
            networks=networks,
            pod_files=pod_files,
            volume_resolvers=claims.RESOLVERS,  # persistentVolumeClaim: the bound node path
            node_mounts=config.runtime != "fake",  # tmpfs volumes, pinned pod namespaces
            policy=NodePolicy(
                allow_probe_host=config.allow_probe_host,
                allow_unconfined_seccomp=config.allow_unconfined_seccomp,
                allow_privileged=config.allow_privileged,
            ),
        ),
        max_pods=config.max_pods,
    )
    # Ephemeral-storage limits and node disk pressure: evicts pods, reports DiskPressure.
    evictions = EvictionManager(
        pods=pods.workers,
        state_dir=config.state_dir,
        writable_root=getattr(images, "containers_dir", None),
        threshold=config.eviction_hard,
        interval=config.eviction_interval,
        transition=config.eviction_transition,
    )
    facts = nodeinfo.gather(
        runtime_version=await runtime.version(),
        max_pods=config.max_pods,
        cpu_millis=config.cpu_millis,
        memory_bytes_override=config.memory_bytes,
    )
    node_events = NodeEvents(config.name)  # image gc's; they go out on WatchPods
    image_filesystem = getattr(images, "images_dir", None)  # None: images not on disk (fake)
    servicer = NodeAgentServicer(
        name=config.name,
        pods=pods,
        facts=facts,
        images=images,
        image_filesystem=image_filesystem,
        node_events=node_events,
        services=services,
        routes=routes,
    )
    # Usage of the node and its pods (top, autoscaling), sampled every --usage-interval s.
    usage = UsageSampler(
        runtime, workers=pods.workers, interval=config.usage_interval, observe=metrics.observe
    )
    streams = (
        PodStreamsServicer(pods=pods, runtime=runtime),
        NodeUsageServicer(name=config.name, sampler=usage),
    )
    server = (
        agent_server(servicer=servicer, listen=config.listen, streams=streams)
        if certs is None
        else agent_server(
            servicer=servicer,
            listen=config.listen,
            streams=streams,
            credentials=certs.server_credentials(),  # the node certificate, renewals included
            interceptors=[credentials.require_identity(pki.CONTROLPLANE)],
        )
    )
    try:
        import_dir = getattr(images, "import_dir", None)
        if import_dir is not None:
            await import_dir()  # archives dropped in <state-dir>/images/import/ before start
        await pods.start()
        address = await server.start()
        addressfile.write(config.address_file, address)
        log.info(
            "agent.started",
            node=config.name,
            address=address,
            tls=certs is not None,
            state_dir=str(config.state_dir),
            runtime=config.runtime,
            pods=len(pods.pods()),
        )
        print(f"pilothouse agent {config.name} serving on {address}", flush=True)
        parts: list[Runnable] = [Task("pods", pods.run), server, usage]
        if config.metrics_listen:  # Prometheus text format (off unless asked for)
            parts.append(metrics.server(config.metrics_listen))
        if services is not None:
            parts.append(services)
        if config.runtime != "fake":  # hollow nodes' pods use no disk
            parts.append(Task("eviction", evictions.run))
        if config.server:
            # Registered only once the API serves: the control plane pushes pods right away.
            registration = _registration(
                config, facts, address, certs, networks=networks, conditions=evictions.conditions
            )
            parts.append(Task("registration", registration.run))
        if certs is not None:
            parts.append(Task("certs", certs.run))  # renewal
        if hasattr(runtime, "rotate_logs"):
            parts.append(Task("logs", functools.partial(logrotation.rotate_forever, runtime)))
        watch_imports = getattr(images, "watch_imports", None)
        if watch_imports is not None:
            parts.append(Task("images", watch_imports))  # archives that appear later
        if image_filesystem is not None:
            # Kubelet's defaults: from 85 % of the image filesystem used down to 80 %.
            collector = ImageGarbageCollector(
                images,
                path=image_filesystem,
                report=functools.partial(_node_event, node_events),
            )
            parts.append(Task("image-gc", collector.run))
        try:
            await run_all(parts)
        except RunnableExited as error:
            log.error("agent.failed", error=str(error))
            return 1
    finally:
        addressfile.remove(config.address_file)
        await server.stop()
        await pods.close()  # stops supervising; containers keep running
        log.info("agent.stopped", node=config.name)
    return 0


def _node_event(events: NodeEvents, event: GcEvent) -> None:
    kind = EventType.WARNING if event.warning else EventType.NORMAL
    events.record(type=kind, reason=event.reason, message=event.message)


def _route_mode(config: settings.Config) -> pod_routes.RouteMode | None:
    """How this node routes to the other nodes' pods: in cni mode, by the node list pushed
    with the pods (None: no routes of ours)."""
    if config.network != "cni" or config.runtime == "fake":
        return None
    return pod_routes.RouteMode(config.pod_routes)


async def _pod_mtu(config: settings.Config, mode: pod_routes.RouteMode | None) -> int | None:
    """The pods' MTU: the node's link, less VXLAN's header when it may be used."""
    if mode is None:
        return None
    return pod_routes.pod_mtu(await pod_routes.link_mtu(config.node_ip), mode)


async def _service_sync(config: settings.Config, networks: PodNetworks) -> ServiceSync | None:
    """The node's Services data plane and DNS: only with a pod network of its own (cni) and
    real containers; it runs in the agent's network namespace (the node's)."""
    if networks.mode is not Mode.CNI or config.runtime == "fake":
        return None
    from nodeagent.services.proxy import DataPlane

    device = await route_device(config.node_ip)
    return ServiceSync(
        plane=DataPlane(route_device=device),
        node_ips=(config.node_ip,),
        pod_cidr=lambda: networks.pod_cidr,
        resolv_conf=config.resolv_conf,
    )


def _registration(
    config: settings.Config,
    facts: nodeinfo.NodeFacts,
    address: str,
    certs: NodeCertificates | None,
    *,
    networks: PodNetworks,
    conditions: Callable[[], list[objects_pb2.Condition]],
) -> Registration:
    """Where the control plane reaches this agent: the bound address, or --node-ip when the
    agent listens on every interface. The pod CIDR asked for: the network's (--pod-cidr or
    the remembered one), else --pod-cidr whatever the network mode."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = config.node_ip
    return Registration(
        server=config.server,
        node_name=config.name,
        instance_id=load_instance_id(config.state_dir),
        node_status=lambda: objects_pb2.NodeStatus(
            capacity=facts.capacity,
            allocatable=facts.allocatable,
            node_info=facts.info,
            conditions=conditions(),  # DiskPressure (the agent's); Ready is the control plane's
        ),
        agent_address=f"{host}:{port}",
        tls=certs.material if certs is not None else None,
        pod_cidr=lambda: networks.pod_cidr or config.pod_cidr,
        on_registered=lambda node: _bind_pod_cidr(networks, node),
    )


def _bind_pod_cidr(networks: PodNetworks, node: objects_pb2.Node) -> None:
    """Bind the pod network to the pod CIDR the control plane gave the node (cni mode)."""
    if networks.mode is not Mode.CNI:
        return
    given = node.spec.pod_cidr
    if not given:
        log.error(
            "node.pod_cidr_missing",
            node=node.metadata.name,
            note="the control plane gave this node no pod CIDR: pods cannot get addresses",
        )
    elif not networks.bind(given):
        log.error(
            "node.pod_cidr_mismatch",
            node=node.metadata.name,
            pod_cidr=networks.pod_cidr,
            registered=given,
            note="pods keep getting addresses from the agent's range",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `pilothouse agent` and `python3 -m nodeagent`."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = settings.parse(argv)
    except settings.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logs.setup(debug=config.debug)
    try:
        return asyncio.run(signals.run_until_signalled(serve(config)))
    except (BindError, JoinFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
