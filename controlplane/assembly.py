"""The control plane's long-lived parts: which runnables every member runs and which only the
elected leader runs, built from the store, the API and the settings that `controlplane.main`
made.

Invariants:
- in `runnables`, the informers come before the parts that read them: run_all stops parts in
  reverse order, so controllers stop before the caches they read, and those before etcd.
  Consumers subscribe to informers when they are built (before anything runs), so none misses
  a change. The NodeRegistry behind the API is the one the node-lifecycle controller asks for
  heartbeat times;
- leadership (`controlplane.leader`): every member serves the API and keeps its informers; the
  parts that act on the cluster (`leader_runnables`: controllers, scheduler, node sync, node
  lifecycle) run only on the elected leader, built afresh for each term over the term's fenced
  store, and stopped when the term ends. `Leadership` is the last part, so a clean stop ends
  the term first and hands over (lease revoked) while the API still serves;
- every controller here is independent of the others; they share only the informers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from controlplane import config as settings
from controlplane import metrics
from controlplane.api.server import ApiServer
from controlplane.auth.serving import Security
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
from controlplane.dashboard.settings import OperateSettings
from controlplane.digests import DigestResolver
from controlplane.events import EventRecorder
from controlplane.leader import Election, Term
from controlplane.leader.leadership import Leadership
from controlplane.leader.placement import RaftPlacement
from controlplane.nodes.agent import Connect, connector
from controlplane.nodes.configs import ConfigView
from controlplane.nodes.leading import while_leading
from controlplane.nodes.peers import PeersView
from controlplane.nodes.services import ClusterNetwork, ServicesView
from controlplane.nodes.settings import DEFAULT_LOCAL_PATH_DIR, RECONNECT_ALLOWANCE, NodeSettings
from controlplane.nodes.syncmanager import NodeSyncManager
from controlplane.nodes.usage import UsageGatherer
from controlplane.objects import ObjectStore
from controlplane.scheduler.claims import StorageView
from controlplane.scheduler.runner import Scheduler
from controlplane.services.repair import AllocationRepair
from controlplane.services.settings import ServiceSettings
from controlplane.store import Store
from controlplane.store.embedded import EmbeddedEtcd
from pilothouse.kinds import Kind
from pilothouse.process.runnable import Runnable, Task


def runnables(
    *,
    api: ApiServer,
    objects: ObjectStore,
    embedded: EmbeddedEtcd | None,
    election: Election,
    raft_placement: Callable[[], Awaitable[str | None]] | None = None,
    defragmenter: Runnable | None = None,
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
        if defragmenter is not None:
            team_parts.append(defragmenter)  # one member at a time, only from the leader
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
            startup_allowance=RECONNECT_ALLOWANCE,
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
        *(
            ReplicaSetReconciler(
                objects=objects,
                kind=kind,
                owners_informer=informers[kind],
                pods=pods,
                events=EventRecorder(objects, component=component),
            ).controller()
            for kind, component in (
                (Kind.REPLICASET, "replicaset-controller"),
                (Kind.REPLICATIONCONTROLLER, "replication-controller"),
            )
        ),
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
