"""Test objects made in one place (as Nomad's `mock` package makes jobs, nodes and allocs):
the Pods, containers, Deployments, ReplicaSets, Nodes and node reports tests need, and the
kinds of issue 15 (Jobs, CronJobs, DaemonSets, StatefulSets, claims, storage classes,
namespaces, ReplicationControllers; those are made in `tests.workload_factories` and
importable from here).

Each factory returns a new message with the defaults below; a test names only what matters
to it (keyword-only arguments) and may change the message further. Nothing here reads the
clock, a file or the network, and nothing is written anywhere.

Defaults, the same for every kind:
- namespace "default" (namespaced kinds); `name` "web" for workloads, "n1" for nodes;
- a Pod's uid is `uid-<name>` (stores replace it with their own on create; agents key their
  state by it, so two pods given to one agent need different names or uids);
- a Deployment or ReplicaSet named N selects and labels its template `app=N` and carries
  the label `app=N` itself, as a manifest written by hand would;
- one container "main" running "busybox:stable"; a node with 2 cpu, 4Gi and room for 110
  pods, Ready.
A field left at its default is left unset where Kubernetes leaves it unset (no replicas, no
grace period, no phase), so the API's and the manifests' defaulting still shows in tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value

from nodeagent.runtime.fake import LABEL_PREFIX as FAKE_KNOB_PREFIX
from pilothouse.cli.shape import to_k8s
from pilothouse.v1 import objects_pb2 as o
from tests.workload_factories import (  # the kinds of issue 15, importable from here
    claim,
    cron_job,
    daemon_set,
    job,
    namespace,
    replication_controller,
    stateful_set,
    storage_class,
)

__all__ = [
    "FAKE_KNOB_PREFIX",
    "claim",
    "container",
    "cron_job",
    "daemon_set",
    "deployment",
    "int_or_percent",
    "job",
    "manifest",
    "namespace",
    "node",
    "node_report",
    "pod",
    "replica_set",
    "replication_controller",
    "stateful_set",
    "storage_class",
]


def container(
    *,
    name: str = "main",
    image: str = "busybox:stable",
    command: Sequence[str] = (),
    args: Sequence[str] = (),
    script: str = "",
    cpu: str = "",
    memory: str = "",
    host_port: int = 0,
    container_port: int = 8080,
) -> o.Container:
    """A container; `script` runs as `sh -c script`; `cpu`/`memory` are requests; a
    `host_port` publishes `container_port` on the node."""
    c = o.Container(name=name, image=image, command=command, args=args)
    if script:
        c.command[:] = ["sh", "-c", script]
    if cpu:
        c.resources.requests["cpu"] = cpu
    if memory:
        c.resources.requests["memory"] = memory
    if host_port:
        c.ports.add(container_port=container_port, host_port=host_port)
    return c


def pod(
    *,
    name: str = "web",
    namespace: str = "default",
    uid: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    knobs: Mapping[str, str] | None = None,
    node: str = "",
    phase: str = "",
    restart_policy: str = "",
    grace: int | None = None,
    owner: str = "",
    owner_name: str = "",
    node_selector: Mapping[str, str] | None = None,
    containers: Sequence[o.Container] | None = None,
) -> o.Pod:
    """A Pod; `node` binds it (spec.nodeName); `grace` is terminationGracePeriodSeconds;
    `knobs` are the fake runtime's (`{"run-for": "0.01"}`); `owner` makes it controlled by
    the ReplicaSet of that uid (named `owner_name`, else the uid)."""
    p = o.Pod()
    meta = p.metadata
    meta.name, meta.namespace = name, namespace
    meta.uid = f"uid-{name}" if uid is None else uid
    meta.labels.update(labels or {})
    meta.annotations.update(annotations or {})
    meta.annotations.update({FAKE_KNOB_PREFIX + k: v for k, v in (knobs or {}).items()})
    if owner:
        meta.owner_references.add(
            kind="ReplicaSet", name=owner_name or owner, uid=owner, controller=True
        )
    p.spec.containers.extend(containers if containers is not None else [container()])
    if restart_policy:
        p.spec.restart_policy = restart_policy
    if grace is not None:
        p.spec.termination_grace_period_seconds = grace
    if node:
        p.spec.node_name = node
    p.spec.node_selector.update(node_selector or {})
    if phase:
        p.status.phase = phase
    return p


def deployment(
    *,
    name: str = "web",
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
    replicas: int | None = None,
    image: str = "busybox:stable",
    containers: Sequence[o.Container] | None = None,
    min_ready: int = 0,
    deadline: int | None = None,
    history_limit: int | None = None,
    strategy: str = "",
    surge: int | str | None = None,
    unavailable: int | str | None = None,
    grace: int | None = None,
    typed: bool = False,
) -> o.Deployment:
    """A Deployment of `replicas` (unset: the API's default of 1) pods of one container
    "main" running `image` (or of `containers`); labels default to `app=<name>`.
    `deadline` is progressDeadlineSeconds, `history_limit` revisionHistoryLimit; `strategy`
    "Recreate" or "RollingUpdate" with maxSurge/maxUnavailable `surge`/`unavailable` (an int
    or a percentage). `grace` is the pods' terminationGracePeriodSeconds. `typed` sets
    apiVersion and kind, as a manifest read from YAML has."""
    d = o.Deployment()
    if typed:
        d.api_version, d.kind = "apps/v1", "Deployment"
    d.metadata.name, d.metadata.namespace = name, namespace
    d.metadata.labels.update({"app": name} if labels is None else labels)
    if replicas is not None:
        d.spec.replicas = replicas
    if min_ready:
        d.spec.min_ready_seconds = min_ready
    if deadline is not None:
        d.spec.progress_deadline_seconds = deadline
    if history_limit is not None:
        d.spec.revision_history_limit = history_limit
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.extend(
        containers if containers is not None else [container(image=image)]
    )
    if grace is not None:
        d.spec.template.spec.termination_grace_period_seconds = grace
    if strategy:
        d.spec.strategy.type = strategy
    for field, value in (("max_surge", surge), ("max_unavailable", unavailable)):
        if value is not None:
            getattr(d.spec.strategy.rolling_update, field).CopyFrom(int_or_percent(value))
    return d


def manifest(message: Message) -> str:
    """`message` as the YAML a person would write for `apply -f` (make it `typed`)."""
    return yaml.safe_dump(to_k8s(message), sort_keys=False)


def int_or_percent(value: int | str) -> Value:
    """maxSurge/maxUnavailable as the API carries them: a number or a string like "25%"."""
    if isinstance(value, str):
        return Value(string_value=value)
    return Value(number_value=value)


def replica_set(
    *,
    name: str = "web-5d8c",
    namespace: str = "default",
    app: str = "web",
    replicas: int | None = None,
    image: str = "busybox:stable",
) -> o.ReplicaSet:
    """A ReplicaSet of `replicas` pods labelled and selected `app=<app>`."""
    rs = o.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace = name, namespace
    rs.metadata.labels["app"] = app
    if replicas is not None:
        rs.spec.replicas = replicas
    rs.spec.selector.match_labels["app"] = app
    rs.spec.template.metadata.labels["app"] = app
    rs.spec.template.spec.containers.append(container(image=image))
    return rs


def node(
    *,
    name: str = "n1",
    labels: Mapping[str, str] | None = None,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    ready: str | None = "True",
    reason: str = "",
    unschedulable: bool = False,
) -> o.Node:
    """A Node as the scheduler sees it: capacity and allocatable `cpu`/`memory`/`pods`, and a
    Ready condition of status `ready` (None: no condition at all)."""
    n = o.Node()
    n.metadata.name = name
    n.metadata.labels.update(labels or {})
    if unschedulable:
        n.spec.unschedulable = True
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    n.status.capacity.update(resources)
    n.status.allocatable.update(resources)
    if ready is not None:
        n.status.conditions.add(type="Ready", status=ready, reason=reason)
    return n


def node_report(
    *,
    name: str = "n1",
    address: str = "10.0.0.7:7071",
    labels: Mapping[str, str] | None = None,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    pod_cidr: str = "",
) -> o.Node:
    """A Node as an agent registers it: its InternalIP and port (`address`), what it has
    (capacity = allocatable), what it runs (nodeInfo), and the pod CIDR it already holds."""
    n = o.Node()
    n.metadata.name = name
    n.metadata.labels.update(labels or {})
    if pod_cidr:
        n.spec.pod_cidr = pod_cidr
    host, _, port = address.rpartition(":")
    n.status.addresses.add(type="InternalIP", address=host)
    n.status.daemon_endpoints.kubelet_endpoint.port = int(port)
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    n.status.capacity.update(resources)
    n.status.allocatable.update(resources)
    info = n.status.node_info
    info.operating_system, info.architecture, info.kubelet_version = "linux", "amd64", "v0.1.0"
    return n
