"""Test factories for the kinds of issue 15: Jobs, CronJobs, DaemonSets, StatefulSets,
PersistentVolumeClaims, StorageClasses, Namespaces and ReplicationControllers.

The same rules as `tests.factories` (which re-exports every factory here): keyword-only
arguments, a new message per call, the defaults that module lists (namespace "default", a
workload named N labels and selects its template `app=N`, one container "main" running
"busybox:stable"), and a field left at its default is left unset where Kubernetes leaves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.v1 import objects_pb2 as o


def _container(**fields: str) -> o.Container:
    """`tests.factories.container`, imported when called: that module re-exports this one."""
    from tests.factories import container

    return container(**fields)


def _template(
    spec: o.PodTemplateSpec,
    *,
    app: str,
    containers: Sequence[o.Container] | None,
    restart_policy: str = "",
) -> None:
    spec.metadata.labels["app"] = app
    spec.spec.containers.extend(containers if containers is not None else [_container()])
    if restart_policy:
        spec.spec.restart_policy = restart_policy


def job(
    *,
    name: str = "pi",
    namespace: str = "default",
    completions: int | None = None,
    parallelism: int | None = None,
    backoff_limit: int | None = None,
    indexed: bool = False,
    deadline: int | None = None,
    ttl: int | None = None,
    restart_policy: str = "Never",
    containers: Sequence[o.Container] | None = None,
) -> o.Job:
    """A batch/v1 Job of one container ("main", busybox) restarting `restart_policy`; `indexed`
    sets completionMode Indexed; `deadline` is activeDeadlineSeconds, `ttl`
    ttlSecondsAfterFinished. Unset counts are left for the defaults."""
    j = o.Job()
    j.metadata.name, j.metadata.namespace = name, namespace
    for field, value in (
        ("completions", completions),
        ("parallelism", parallelism),
        ("backoff_limit", backoff_limit),
        ("active_deadline_seconds", deadline),
        ("ttl_seconds_after_finished", ttl),
    ):
        if value is not None:
            setattr(j.spec, field, value)
    if indexed:
        j.spec.completion_mode = "Indexed"
    _template(j.spec.template, app=name, containers=containers, restart_policy=restart_policy)
    return j


def cron_job(
    *,
    name: str = "tick",
    namespace: str = "default",
    schedule: str = "*/1 * * * *",
    concurrency: str = "",
    deadline: int | None = None,
    suspend: bool | None = None,
    time_zone: str | None = None,
    containers: Sequence[o.Container] | None = None,
) -> o.CronJob:
    """A batch/v1 CronJob running `schedule`; `concurrency` is concurrencyPolicy, `deadline`
    startingDeadlineSeconds; its Jobs run one container restarting Never."""
    c = o.CronJob()
    c.metadata.name, c.metadata.namespace = name, namespace
    c.spec.schedule = schedule
    if concurrency:
        c.spec.concurrency_policy = concurrency
    if deadline is not None:
        c.spec.starting_deadline_seconds = deadline
    if suspend is not None:
        c.spec.suspend = suspend
    if time_zone is not None:
        c.spec.time_zone = time_zone
    _template(
        c.spec.job_template.spec.template, app=name, containers=containers, restart_policy="Never"
    )
    return c


def daemon_set(
    *,
    name: str = "agent",
    namespace: str = "default",
    image: str = "busybox:stable",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[o.Toleration] = (),
    strategy: str = "",
) -> o.DaemonSet:
    """An apps/v1 DaemonSet selecting and labelling `app=<name>`; `strategy` is
    updateStrategy.type (RollingUpdate or OnDelete)."""
    d = o.DaemonSet()
    d.metadata.name, d.metadata.namespace = name, namespace
    d.metadata.labels["app"] = name
    d.spec.selector.match_labels["app"] = name
    _template(d.spec.template, app=name, containers=[_container(image=image)])
    d.spec.template.spec.node_selector.update(node_selector or {})
    d.spec.template.spec.tolerations.extend(tolerations)
    if strategy:
        d.spec.update_strategy.type = strategy
    return d


def claim(
    *,
    name: str = "data",
    namespace: str = "default",
    storage: str = "1Gi",
    storage_class: str | None = None,
    access_modes: Sequence[str] = ("ReadWriteOnce",),
) -> o.PersistentVolumeClaim:
    """A PersistentVolumeClaim asking for `storage`; `storage_class` None leaves the class
    to the cluster's default."""
    c = o.PersistentVolumeClaim()
    c.metadata.name, c.metadata.namespace = name, namespace
    c.spec.access_modes.extend(access_modes)
    c.spec.resources.requests["storage"] = storage
    if storage_class is not None:
        c.spec.storage_class_name = storage_class
    return c


def stateful_set(
    *,
    name: str = "web",
    namespace: str = "default",
    replicas: int | None = None,
    image: str = "busybox:stable",
    service: str = "web",
    claims: Sequence[str] = (),
    storage_class: str | None = None,
    parallel: bool = False,
    containers: Sequence[o.Container] | None = None,
) -> o.StatefulSet:
    """An apps/v1 StatefulSet of `replicas` pods selected and labelled `app=<name>`, governed by
    the Service `service`; each name in `claims` is a volumeClaimTemplate (1Gi,
    ReadWriteOnce, of `storage_class`) mounted at /<name> in every container."""
    s = o.StatefulSet()
    s.metadata.name, s.metadata.namespace = name, namespace
    s.metadata.labels["app"] = name
    if replicas is not None:
        s.spec.replicas = replicas
    s.spec.service_name = service
    s.spec.selector.match_labels["app"] = name
    _template(
        s.spec.template,
        app=name,
        containers=containers if containers is not None else [_container(image=image)],
    )
    for claim_name in claims:
        template = claim(name=claim_name, namespace="", storage_class=storage_class)
        template.metadata.namespace = ""
        s.spec.volume_claim_templates.append(template)
        for c in s.spec.template.spec.containers:
            c.volume_mounts.add(name=claim_name, mount_path=f"/{claim_name}")
    if parallel:
        s.spec.pod_management_policy = "Parallel"
    return s


def storage_class(
    *,
    name: str = "local-path",
    binding: str = "WaitForFirstConsumer",
    reclaim: str = "Delete",
    path: str = "",
    default: bool = False,
) -> o.StorageClass:
    """The built-in local-path provisioner's class; `path` is the nodePath parameter."""
    c = o.StorageClass()
    c.metadata.name = name
    c.provisioner = "pilothouse.io/local-path"
    c.volume_binding_mode = binding
    c.reclaim_policy = reclaim
    if path:
        c.parameters["nodePath"] = path
    if default:
        c.metadata.annotations["storageclass.kubernetes.io/is-default-class"] = "true"
    return c


def namespace(*, name: str = "team-a") -> o.Namespace:
    n = o.Namespace()
    n.metadata.name = name
    return n


def replication_controller(
    *, name: str = "redis", namespace: str = "default", replicas: int | None = None
) -> o.ReplicationController:
    """A legacy v1 ReplicationController selecting `app=<name>` with a plain map."""
    rc = o.ReplicationController()
    rc.metadata.name, rc.metadata.namespace = name, namespace
    if replicas is not None:
        rc.spec.replicas = replicas
    rc.spec.selector["app"] = name
    _template(rc.spec.template, app=name, containers=None)
    return rc
