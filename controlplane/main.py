"""`pilothouse controlplane`: wires store → ObjectStore → API, informers, controllers, scheduler
and node sync, and runs them until stopped.

The wiring is explicit and happens only here (no registration at import time). Order matters:
1. etcd first (embedded: started and then supervised), because everything reads from it;
2. the API binds its address before the runnables start, so a taken port fails fast;
3. security (unless `--insecure`): the PKI files are made or refreshed before the API binds,
   and `admin.conf` is written once the API's address is known, before `controlplane.addr`;
   node sync and the logs proxy call agents with the control plane's client certificate;
   `controlplane.addr` is written only once the API serves, and removed on the way out;
4. in `runnables`, the informers come before the parts that read them: run_all stops parts in
   reverse order, so controllers stop before the caches they read, and those before etcd.
   Consumers subscribe to informers when they are built (before anything runs), so none
   misses a change. The NodeRegistry behind the API is the one the node-lifecycle controller
   asks for heartbeat times.
5. leadership (`controlplane.leader`): every member serves the API and keeps its informers;
   the parts that act on the cluster (`leader_runnables`: controllers, scheduler, node sync,
   node lifecycle) run only on the elected leader, built afresh for each term over the term's
   fenced store, and stopped when the term ends. `Leadership` is the last part, so a clean
   stop ends the term first and hands over (lease revoked) while the API still serves.

SIGTERM and SIGINT stop everything cleanly, the embedded etcd child last. A part that stops
on its own makes the process exit non-zero (see `pilothouse.process.runnable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence

import grpc
import structlog

from controlplane import config as settings
from controlplane import metrics
from controlplane.api.controlplanes import ControlPlanesServicer
from controlplane.api.hostports import port_of
from controlplane.api.server import ApiServer
from controlplane.auth import bootstrap
from controlplane.auth.admission import NodeAccessRules, node_lookup
from controlplane.auth.approvals import Approvals
from controlplane.auth.revocations import Revocations
from controlplane.auth.serving import Security, join_listen_for
from controlplane.auth.tokens import TokenStore
from controlplane.cache.informer import Informer
from controlplane.controllers.autoscaler import Settings as AutoscalerSettings
from controlplane.controllers.autoscaler import horizontal_pod_autoscaler_controller
from controlplane.controllers.cronjob import CronJobReconciler
from controlplane.controllers.daemonset import DaemonSetReconciler
from controlplane.controllers.deployment import deployment_controller
from controlplane.controllers.endpointslice import endpointslice_controller
from controlplane.controllers.eventttl import EventExpiry
from controlplane.controllers.garbage import garbage_collector
from controlplane.controllers.job import job_controller
from controlplane.controllers.namespace import namespace_controller
from controlplane.controllers.nodelifecycle import Heartbeats, NodeLifecycleController
from controlplane.controllers.podgc import pod_garbage_collector
from controlplane.controllers.replicaset import ReplicaSetReconciler
from controlplane.controllers.statefulset import StatefulSetReconciler
from controlplane.controllers.storage import storage_controller
from controlplane.dashboard import settings as operate_flags
from controlplane.dashboard.settings import OperateSettings
from controlplane.digests import DigestResolver, NoDigests, RegistryDigestResolver
from controlplane.events import EventRecorder
from controlplane.leader import Candidate, Election, Term
from controlplane.leader import members as leader_members
from controlplane.leader import settings as ha_flags
from controlplane.leader.leadership import Leadership
from controlplane.leader.placement import RaftPlacement
from controlplane.leader.settings import HaSettings
from controlplane.nodes import settings as node_flags
from controlplane.nodes.agent import Connect, connector
from controlplane.nodes.configs import ConfigView
from controlplane.nodes.leading import while_leading
from controlplane.nodes.leases import NodeLeases
from controlplane.nodes.peers import PeersView
from controlplane.nodes.registry import NodeRegistry
from controlplane.nodes.services import ClusterNetwork, ServicesView
from controlplane.nodes.settings import DEFAULT_LOCAL_PATH_DIR, NodeSettings
from controlplane.nodes.syncmanager import NodeSyncManager
from controlplane.nodes.usage import UsageGatherer
from controlplane.objects import ObjectStore
from controlplane.objects.encryption import Encryption, Keyring
from controlplane.scheduler.claims import StorageView
from controlplane.scheduler.runner import Scheduler
from controlplane.services import settings as service_flags
from controlplane.services.addresses import ServiceAddresses
from controlplane.services.repair import AllocationRepair
from controlplane.services.settings import ServiceSettings
from controlplane.store import Store, StoreError
from controlplane.store import tls as etcd_tls
from controlplane.store.embedded import EmbeddedEtcd, EtcdNotFound, EtcdStartFailed
from controlplane.store.etcd import EtcdStore
from pilothouse import logs
from pilothouse.kinds import Kind
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.process import addressfile, signals
from pilothouse.process.grpcserver import BindError
from pilothouse.process.runnable import Runnable, RunnableExited, Task, run_all

log = structlog.get_logger(__name__)


def runnables(
    *,
    api: ApiServer,
    objects: ObjectStore,
    embedded: EmbeddedEtcd | None,
    election: Election,
    raft_placement: Callable[[], Awaitable[str | None]] | None = None,
    nodes: NodeSettings | None = None,
    resolver: DigestResolver | None = None,
    connect: Connect | None = None,
    services: ServiceSettings | None = None,
    operate: OperateSettings | None = None,
) -> list[Runnable]:
    """Every long-lived part of the control plane, in start order (see the module docstring)."""
    nodes = nodes or NodeSettings()
    services = services or ServiceSettings()
    network = ClusterNetwork(
        service_cidr=services.service_cidr,
        cluster_cidr=nodes.cluster_cidr,
        cluster_domain=services.cluster_domain,
    )
    parts: list[Runnable] = []
    if embedded is not None:
        parts.append(Task("etcd", embedded.run))  # keeps it alive, restarts it when it dies
    parts.append(api)
    informers = {kind: Informer(objects, kind) for kind in _CACHED_KINDS}
    parts.extend(informers.values())
    # Allocations a crash left behind: safe on every member (revision-conditional).
    parts.append(AllocationRepair(objects, api.services))

    def team(term: Term, store: Store) -> list[Runnable]:
        team_parts = leader_runnables(
            ObjectStore(store, encryption=objects.encryption, graceful_pods=objects.graceful_pods),
            informers=informers,
            network=network,
            heartbeats=api.registry,
            nodes=nodes,
            resolver=resolver,
            connect=while_leading(connect or connector(), term.valid),
        )
        if raft_placement is not None:
            team_parts.append(RaftPlacement(raft_placement))
        team_parts.extend(
            operating_team(
                ObjectStore(store, encryption=objects.encryption),
                informers=informers,
                usage=api.usage,
                operate=operate or OperateSettings(),
            )
        )
        return team_parts

    parts.append(Leadership(election, team=team, informers=list(informers.values())))
    return parts


def leader_runnables(
    objects: ObjectStore,
    *,
    informers: Mapping[Kind, Informer],
    heartbeats: Heartbeats,
    nodes: NodeSettings,
    resolver: DigestResolver | None = None,
    connect: Connect | None = None,
    network: ClusterNetwork | None = None,
) -> list[Runnable]:
    """The parts only the leader runs (each declares `needs_leadership`), built for one term
    over its fenced `objects`, reading the shared `informers`. They stop in reverse order."""
    parts: list[Runnable] = []
    pods, node_cache = informers[Kind.POD], informers[Kind.NODE]
    parts.append(
        deployment_controller(
            objects,
            deployments=informers[Kind.DEPLOYMENT],
            replicasets=informers[Kind.REPLICASET],
            pods=pods,
            events=EventRecorder(objects, component="deployment-controller"),
            resolver=resolver,
        )
    )
    parts.append(
        garbage_collector(
            objects,
            informers={kind: informers[kind] for kind in _OWNING_KINDS},
        )
    )
    parts.append(
        endpointslice_controller(
            objects,
            services=informers[Kind.SERVICE],
            pods=pods,
            slices=informers[Kind.ENDPOINTSLICE],
            nodes=node_cache,
        )
    )
    parts.append(pod_garbage_collector(objects, pods=pods))
    parts.extend(
        workload_controllers(objects, informers=informers, local_path_dir=nodes.local_path_dir)
    )
    parts.append(
        Scheduler(
            objects,
            pods=pods,
            nodes=node_cache,
            events=EventRecorder(objects, component="default-scheduler"),
            storage=StorageView(
                claims=informers[Kind.PERSISTENTVOLUMECLAIM],
                volumes_informer=informers[Kind.PERSISTENTVOLUME],
                classes=informers[Kind.STORAGECLASS],
                pods=pods,
            ),
        )
    )
    node_events = EventRecorder(objects, component="node-controller")
    parts.append(
        NodeSyncManager(
            objects,
            nodes=node_cache,
            pods=pods,
            events=node_events,
            resync_interval=nodes.resync_interval,
            connect=connect,
            configs=ConfigView(
                config_maps=informers[Kind.CONFIGMAP], secrets=informers[Kind.SECRET]
            ),
            services=ServicesView(
                services=informers[Kind.SERVICE],
                slices=informers[Kind.ENDPOINTSLICE],
                network=network or ClusterNetwork(cluster_cidr=nodes.cluster_cidr),
            ),
            peers=PeersView(nodes=node_cache),  # agents route to each other's pods by it
        )
    )
    parts.append(
        NodeLifecycleController(
            objects,
            nodes=node_cache,
            pods=pods,
            heartbeats=heartbeats,
            events=node_events,
            grace_period=nodes.grace_period,
            eviction_timeout=nodes.eviction_timeout,
        )
    )
    return parts


def workload_controllers(
    objects: ObjectStore,
    *,
    informers: Mapping[Kind, Informer],
    local_path_dir: str = DEFAULT_LOCAL_PATH_DIR,
) -> list[Runnable]:
    """The controllers of the workload kinds beyond Deployments (issue 15), one per kind,
    independent of each other; leader-only like every Controller. `local_path_dir`: where
    the built-in local-path class puts volumes on the nodes (`--local-path-dir`)."""
    pods = informers[Kind.POD]
    revisions = informers[Kind.CONTROLLERREVISION]
    return [
        namespace_controller(objects, namespaces_informer=informers[Kind.NAMESPACE]),
        ReplicaSetReconciler(
            objects=objects,
            kind=Kind.REPLICASET,
            owners_informer=informers[Kind.REPLICASET],
            pods=pods,
            events=EventRecorder(objects, component="replicaset-controller"),
        ).controller(),
        ReplicaSetReconciler(
            objects=objects,
            kind=Kind.REPLICATIONCONTROLLER,
            owners_informer=informers[Kind.REPLICATIONCONTROLLER],
            pods=pods,
            events=EventRecorder(objects, component="replication-controller"),
        ).controller(),
        job_controller(
            objects,
            jobs=informers[Kind.JOB],
            pods=pods,
            events=EventRecorder(objects, component="job-controller"),
        ),
        CronJobReconciler(
            objects=objects,
            cronjobs=informers[Kind.CRONJOB],
            jobs=informers[Kind.JOB],
            events=EventRecorder(objects, component="cronjob-controller"),
        ).controller(),
        DaemonSetReconciler(
            objects=objects,
            daemonsets=informers[Kind.DAEMONSET],
            pods=pods,
            nodes=informers[Kind.NODE],
            controllerrevisions=revisions,
            events=EventRecorder(objects, component="daemonset-controller"),
        ).controller(),
        StatefulSetReconciler(
            objects=objects,
            statefulsets=informers[Kind.STATEFULSET],
            pods=pods,
            controllerrevisions=revisions,
            events=EventRecorder(objects, component="statefulset-controller"),
        ).controller(),
        storage_controller(
            objects,
            claims=informers[Kind.PERSISTENTVOLUMECLAIM],
            volumes=informers[Kind.PERSISTENTVOLUME],
            classes=informers[Kind.STORAGECLASS],
            nodes=informers[Kind.NODE],
            pods=pods,
            events=EventRecorder(objects, component="persistentvolume-controller"),
            node_path=local_path_dir,
        ),
    ]


# Kinds that own or are owned: the garbage collector follows them all.
_OWNING_KINDS = (
    Kind.DEPLOYMENT,
    Kind.REPLICASET,
    Kind.REPLICATIONCONTROLLER,
    Kind.JOB,
    Kind.CRONJOB,
    Kind.DAEMONSET,
    Kind.STATEFULSET,
    Kind.CONTROLLERREVISION,
    Kind.PERSISTENTVOLUMECLAIM,
    Kind.POD,
)

_CACHED_KINDS = (
    Kind.NODE,
    Kind.HORIZONTALPODAUTOSCALER,
    Kind.NAMESPACE,
    Kind.REPLICATIONCONTROLLER,
    Kind.JOB,
    Kind.CRONJOB,
    Kind.DAEMONSET,
    Kind.STATEFULSET,
    Kind.CONTROLLERREVISION,
    Kind.PERSISTENTVOLUMECLAIM,
    Kind.PERSISTENTVOLUME,
    Kind.STORAGECLASS,
    Kind.POD,
    Kind.DEPLOYMENT,
    Kind.REPLICASET,
    Kind.SERVICE,
    Kind.ENDPOINTSLICE,
    Kind.CONFIGMAP,
    Kind.SECRET,
)


async def serve(
    config: settings.Config,
    nodes: NodeSettings | None = None,
    ha: HaSettings | None = None,
    services: ServiceSettings | None = None,
    operate: OperateSettings | None = None,
) -> int:
    """Run the control plane until cancelled (0) or until a part fails (1)."""
    nodes = nodes or NodeSettings()
    services = services or ServiceSettings()
    ha = ha or HaSettings()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = _embedded_etcd(config, ha)
    store: EtcdStore | None = None
    api: ApiServer | None = None
    try:
        endpoints = [await embedded.start()] if embedded else list(config.etcd_endpoints)
        store = EtcdStore(endpoints, credentials=_etcd_credentials(config, embedded))
        # Secrets are sealed with the keys of the pki dir (made on first start, see
        # controlplane.objects.encryption) before anything can write one.
        # Pods are deleted gracefully: marked, stopped by their agent (after their endpoints
        # left every node's load balancing), then removed (see controlplane.nodes).
        objects = ObjectStore(
            store, encryption=Encryption(Keyring.ensure(config.pki_dir)), graceful_pods=True
        )
        # Heartbeats reach any member; every member publishes and sees them all.
        leases = NodeLeases(store, member=ha.member)
        registry = NodeRegistry(
            objects,
            grace_period=nodes.grace_period,
            heartbeat_interval=nodes.heartbeat_interval,
            pod_cidrs=nodes.pod_cidrs(),
            leases=leases,
        )
        security, connect = _security(config, store)
        api = ApiServer(
            objects=objects,
            listen=config.listen,
            registry=registry,
            connect=connect,
            security=security,
            policy=config.policy,
            controlplanes=ControlPlanesServicer(
                store, served_by=ha.member, etcd_status=store.cluster_members
            ),
            services=ServiceAddresses(objects, services),
        )
        address = await api.start()
        # etcd's ports are the cluster's own: no pod may take them as a hostPort.
        api.reserved_ports.add(*(port_of(url) for url in endpoints))
        if embedded is not None:
            api.reserved_ports.add(*embedded.ports)
        if security is not None:
            bootstrap.ensure_admin_config(
                security.pki, path=config.admin_config, server=_local(address)
            )
            addressfile.write(config.join_address_file, api.join_address or "")
        addressfile.write(config.address_file, address)
        log.info(
            "controlplane.serving",
            address=address,
            join_address=api.join_address or "",
            secure=security is not None,
            etcd=",".join(endpoints),
            embedded_etcd=embedded is not None,
            data_dir=str(config.data_dir),
        )
        _announce(config, address, security, join_address=api.join_address)
        resolver: DigestResolver = (
            RegistryDigestResolver(RegistriesConfig.load(config.registries))
            if config.registries
            else NoDigests()
        )
        candidate = Candidate(
            name=ha.member, address=address, etcd=embedded.endpoint if embedded else ""
        )
        try:
            await leader_members.announce(store, candidate)
        except StoreError as error:
            log.warning("controlplane.announce_failed", error=str(error))
        parts = runnables(
            api=api,
            objects=objects,
            embedded=embedded,
            election=Election(store, candidate=candidate, ttl=ha.lease_ttl),
            raft_placement=_raft_placement(store, embedded, ha),
            nodes=nodes,
            resolver=resolver,
            connect=connect,
            services=services,
            operate=operate,
        )
        parts.insert(1 if embedded else 0, Task("etcd.members", _members_of(store)))
        parts[-1:-1] = operating_parts(api, operate or OperateSettings(), config, security)
        parts.insert(-1, leases)  # before the leadership, so it stops after the leader's parts
        await run_all(parts)
    except RunnableExited as error:
        log.error("controlplane.failed", error=str(error))
        return 1
    except asyncio.CancelledError:
        log.info("controlplane.stopping")
        return 0
    finally:
        # Stop taking calls first, then drop etcd: the reverse of the start order.
        addressfile.remove(config.address_file, config.join_address_file)
        if api is not None:
            await api.stop()
        if store is not None:
            await store.close()
        if embedded is not None:
            await embedded.stop()
        log.info("controlplane.stopped")
    return 0


def _raft_placement(
    store: EtcdStore, embedded: EmbeddedEtcd | None, ha: HaSettings
) -> Callable[[], Awaitable[str | None]] | None:
    """While leading, keep etcd's raft leader off this member's etcd (controlplane.leader.
    placement); only for an embedded etcd that is one member of several."""
    if embedded is None or ha.cluster() is None:
        return None

    async def move() -> str | None:
        return await store.move_raft_leader(away_from=embedded.endpoint)

    return move


def operating_team(
    objects: ObjectStore,
    *,
    informers: Mapping[Kind, Informer],
    usage: UsageGatherer,
    operate: OperateSettings,
) -> list[Runnable]:
    """The leader's parts of issue 16: HorizontalPodAutoscalers (reading the agents' usage
    through the API's gatherer) and the expiry of events after an hour."""
    return [
        horizontal_pod_autoscaler_controller(
            objects,
            autoscalers=informers[Kind.HORIZONTALPODAUTOSCALER],
            pods=informers[Kind.POD],
            metrics_source=usage.cpu_memory,
            events=EventRecorder(objects, component="horizontal-pod-autoscaler"),
            settings=AutoscalerSettings(
                sync_period=operate.hpa_sync_period,
                downscale_stabilization=operate.hpa_downscale_stabilization,
                tolerance=operate.hpa_tolerance,
            ),
        ),
        EventExpiry(objects),
    ]


def operating_parts(
    api: ApiServer,
    operate: OperateSettings,
    config: settings.Config,
    security: Security | None,
) -> list[Runnable]:
    """Every member's parts of issue 16: Prometheus metrics and the web dashboard, each only
    when its flag names an address."""
    parts: list[Runnable] = []
    if operate.metrics_listen:
        parts.append(metrics.server(operate.metrics_listen))
    if operate.dashboard_listen:
        from controlplane.dashboard.server import Dashboard

        parts.append(
            Dashboard(
                listen=operate.dashboard_listen,
                objects=api.objects,
                usage=api.usage,
                connect=api.connect,
                data_dir=config.data_dir,
                pki=security.pki if security is not None else None,
            )
        )
    return parts


def _members_of(store: EtcdStore) -> Callable[[], Awaitable[None]]:
    """Learn the other etcd members' client URLs (MemberList), so the store can fail over
    to them when the one it uses dies; again every 10 s (members start at different times)."""

    async def discover() -> None:
        while True:
            with contextlib.suppress(StoreError):
                await store.cluster_members()
            await asyncio.sleep(10.0)

    return discover


def _embedded_etcd(config: settings.Config, ha: HaSettings) -> EmbeddedEtcd | None:
    """The etcd this process runs (None with --etcd): mutual TLS with its own CA, or
    plaintext on loopback with --insecure."""
    if config.etcd_endpoints:
        if not config.etcd_tls:
            log.warning(
                "controlplane.etcd_plaintext",
                etcd=",".join(config.etcd_endpoints),
                note="whoever reaches this etcd can read and change the whole cluster",
            )
        return None
    cluster = ha.cluster()
    hosts = (*etcd_tls.DEFAULT_HOSTS, cluster.host) if cluster else etcd_tls.DEFAULT_HOSTS
    tls = None if config.insecure else etcd_tls.ensure(config.etcd_pki_dir, hosts=hosts)
    return EmbeddedEtcd(
        data_dir=config.etcd_dir, tls=tls, cluster=cluster, client_port=ha.client_port
    )


def _etcd_credentials(
    config: settings.Config, embedded: EmbeddedEtcd | None
) -> grpc.ChannelCredentials | None:
    """How the store dials etcd: the embedded etcd's client certificate, the --etcd-* files,
    or nothing (plaintext)."""
    if embedded is not None:
        if embedded.tls is None:
            return None
        ca, cert, key = embedded.tls.client_pems()
        return grpc.ssl_channel_credentials(ca, key, cert)
    files = config.etcd_tls
    if files is None:
        return None
    try:
        return grpc.ssl_channel_credentials(
            files.ca_file.read_bytes(),
            files.key_file.read_bytes() if files.key_file else None,
            files.cert_file.read_bytes() if files.cert_file else None,
        )
    except OSError as error:
        raise settings.ConfigError(f"cannot read the etcd TLS files: {error}") from None


def _init_pki(config: settings.Config, ha: HaSettings) -> None:
    """`--init-pki`: what every member of one control plane shares (see leader.settings)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap.ensure(config.pki_dir, hosts=bootstrap.serving_hosts(config.listen, config.tls_sans))
    cluster = ha.cluster()
    hosts = (*etcd_tls.DEFAULT_HOSTS, cluster.host) if cluster else etcd_tls.DEFAULT_HOSTS
    etcd_tls.ensure(config.etcd_pki_dir, hosts=hosts)
    Keyring.ensure(config.pki_dir)


def _security(config: settings.Config, store: EtcdStore) -> tuple[Security | None, Connect]:
    """The API's security and how to dial agents: mTLS with the cluster PKI, or nothing at
    all with --insecure."""
    if config.insecure:
        log.warning("controlplane.insecure", note="plaintext, no authentication: dev only")
        return None, connector()
    cluster_pki = bootstrap.ensure(
        config.pki_dir, hosts=bootstrap.serving_hosts(config.listen, config.tls_sans)
    )
    revocations = Revocations(store)
    security = Security(
        pki=cluster_pki,
        tokens=TokenStore(store),
        join_listen=config.join_listen or join_listen_for(config.listen),
        access=NodeAccessRules(
            revocations=revocations,
            approvals=Approvals(store),
            lookup=node_lookup(ObjectStore(store)),
            grace=config.node_rejoin_grace,
        ),
    )
    # No pod, Secret or log request goes to a node that is cut off (revoked or deleted).
    return security, connector(tls=cluster_pki.agent_client(), refuse=revocations.cut_off)


def _local(address: str) -> str:
    """The address a local CLI dials: a wildcard listen host becomes loopback."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]"
    return f"{host}:{port}"


def _announce(
    config: settings.Config, address: str, security: Security | None, *, join_address: str | None
) -> None:
    """Tell the person who started it where it serves and how to use it (stdout)."""
    print(f"pilothouse control plane serving on {address}", flush=True)
    if security is None:
        print("WARNING: --insecure: no TLS, no authentication (development only)", flush=True)
        return
    print(
        f"nodes join on {join_address} (CA {security.pki.ca_cert_hash})\n"
        f"admin credentials: {config.admin_config}\n"
        f"  use them with: export PILOTHOUSE_CONFIG={config.admin_config}\n"
        "  (or --config; keep the file and pki/ private)\n"
        "  join a node: pilothouse token create --print-join-command",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `pilothouse controlplane` and `python3 -m controlplane`."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        nodes, rest = node_flags.split(argv)
        ha, rest = ha_flags.split(rest)
        services, rest = service_flags.split(rest, cluster_cidr=nodes.cluster_cidr)
        operate, rest = operate_flags.split(rest)
        if "-h" in rest or "--help" in rest:
            full = settings.parser()
            node_flags.add_flags(full)
            ha_flags.add_flags(full)
            service_flags.add_flags(full)
            operate_flags.add_flags(full)
            full.print_help()
            return 0
        config = settings.parse(rest)
    except (
        settings.ConfigError,
        node_flags.SettingsError,
        ha_flags.SettingsError,
        service_flags.SettingsError,
        operate_flags.SettingsError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logs.setup(debug=config.debug)
    if ha.init_pki:
        _init_pki(config, ha)
        print(f"PKI made under {config.pki_dir}: copy it to the other members' data dirs")
        return 0
    try:
        return asyncio.run(signals.run_until_signalled(serve(config, nodes, ha, services, operate)))
    except (EtcdNotFound, EtcdStartFailed, BindError, settings.ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
