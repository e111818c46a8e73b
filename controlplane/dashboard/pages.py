"""The dashboard's pages, rendered on the server: plain HTML over what the store holds and the
agents measured, refreshed in place by the local script (`static/dashboard.js`).

- overview (`/`): every node with its status and usage and the pods on it (phase, restarts,
  CPU, memory, a link to their live log); every Deployment with its rollout (ready, up to date
  and available of desired, a progress bar, the rollout's condition) and its revision history
  (the ReplicaSets by revision, with their images and pods); the latest events;
- `/fragment/overview`: the same body alone, what the script fetches every second;
- `/pods/NS/NAME`: a pod's live log (server-sent events from `/api/logs/NS/NAME`).

Invariants: every value from the cluster is HTML-escaped; the pages hold no inline script or
style (the server's Content-Security-Policy forbids them); nothing here writes anything.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from controlplane.nodes.usage import UsageGatherer
from controlplane.objects import ObjectStore
from pilothouse import quantity
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

__all__ = ["Kind", "View", "message", "overview", "overview_body", "pod_logs"]

REVISION = "deployment.kubernetes.io/revision"
EVENTS_SHOWN = 25


@dataclass(slots=True)
class View:
    nodes: list[o.Node]
    pods: list[o.Pod]
    deployments: list[o.Deployment]
    replicasets: list[o.ReplicaSet]
    events: list[o.Event]
    node_usage: dict[str, tuple[int, int]] = field(default_factory=dict)  # millicores, bytes
    pod_usage: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @classmethod
    async def gather(cls, objects: ObjectStore, usage: UsageGatherer) -> View:
        def items(kind: Kind) -> list:  # type: ignore[type-arg]
            return listings[kind]

        listings = {}
        for kind in (Kind.NODE, Kind.POD, Kind.DEPLOYMENT, Kind.REPLICASET, Kind.EVENT):
            listings[kind] = list((await objects.list(kind, None)).items)
        view = cls(
            nodes=sorted(items(Kind.NODE), key=lambda n: n.metadata.name),
            pods=sorted(items(Kind.POD), key=lambda p: (p.metadata.namespace, p.metadata.name)),
            deployments=sorted(
                items(Kind.DEPLOYMENT), key=lambda d: (d.metadata.namespace, d.metadata.name)
            ),
            replicasets=items(Kind.REPLICASET),
            events=sorted(items(Kind.EVENT), key=_event_time, reverse=True)[:EVENTS_SHOWN],
        )
        gathered = await usage.gather()
        view.errors = list(gathered.errors)
        for node, sample in gathered.nodes.items():
            if sample.HasField("node"):
                view.node_usage[node] = (
                    round(sample.node.cpu_nanocores / 1e6),
                    sample.node.memory_working_set_bytes,
                )
            for pod in sample.pods:
                view.pod_usage[(pod.namespace, pod.name)] = (
                    round(sum(c.cpu_nanocores for c in pod.containers) / 1e6),
                    sum(c.memory_working_set_bytes for c in pod.containers),
                )
        return view


def _event_time(event: o.Event) -> float:
    stamp = event.last_timestamp if event.last_timestamp.seconds else event.first_timestamp
    return stamp.seconds + stamp.nanos / 1e9


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, *, live: str = "") -> str:
    data = f' data-live="{_e(live)}"' if live else ""
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(title)} · Pilothouse</title>"
        '<link rel=stylesheet href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head>'
        f'<body><header><a href="/">Pilothouse</a> <span>{_e(title)}</span></header>'
        f"<main id=live{data}>{body}</main></body></html>\n"
    )


def message(title: str, text: str) -> str:
    return _page(title, f"<h1>{_e(title)}</h1><p>{_e(text)}</p>")


def overview(view: View) -> str:
    return _page("Cluster", overview_body(view), live="/fragment/overview")


def overview_body(view: View) -> str:
    parts = [f"<p class=stamp>updated {_e(datetime.now(UTC).strftime('%H:%M:%S'))} UTC</p>"]
    for error in view.errors:
        parts.append(f"<p class=warn>{_e(error)}</p>")
    parts.append(_nodes(view))
    parts.append(_deployments(view))
    parts.append(_events(view))
    return "".join(parts)


def _cpu(millis: int | None) -> str:
    return "-" if millis is None else f"{millis}m"


def _memory(count: int | None) -> str:
    return "-" if count is None else quantity.human_memory(count)


def _amount(memory: str) -> str:
    try:
        return quantity.human_memory(quantity.parse_memory(memory))
    except ValueError:
        return memory or "?"


def _ready(node: o.Node) -> str:
    for condition in node.status.conditions:
        if condition.type == "Ready":
            return "Ready" if condition.status == "True" else "NotReady"
    return "Unknown"


def _nodes(view: View) -> str:
    rows = []
    for node in view.nodes:
        name = node.metadata.name
        cpu, memory = view.node_usage.get(name, (None, None))
        alloc = node.status.allocatable
        pods = [p for p in view.pods if p.spec.node_name == name]
        rows.append(
            f'<section class=node id="node-{_e(name)}"><h3>{_e(name)} '
            f'<span class="status {_e(_ready(node).lower())}">{_e(_ready(node))}</span></h3>'
            f"<p>CPU {_e(_cpu(cpu))} of {_e(alloc.get('cpu', '?'))} · memory "
            f"{_e(_memory(memory))} of {_e(_amount(alloc.get('memory', '')))} · "
            f"{len(pods)} pods</p>" + _pods_table(view, pods) + "</section>"
        )
    return "<h2>Nodes</h2>" + ("".join(rows) or "<p>No nodes.</p>")


def _pods_table(view: View, pods: list[o.Pod]) -> str:
    if not pods:
        return ""
    rows = []
    for pod in pods:
        meta = pod.metadata
        cpu, memory = view.pod_usage.get((meta.namespace, meta.name), (None, None))
        restarts = sum(s.restart_count for s in pod.status.container_statuses)
        phase = "Terminating" if meta.HasField("deletion_timestamp") else pod.status.phase
        link = f"/pods/{_e(meta.namespace)}/{_e(meta.name)}"
        rows.append(
            f'<tr class=pod><td><a href="{link}">{_e(meta.namespace)}/{_e(meta.name)}</a></td>'
            f"<td>{_e(phase or 'Pending')}</td><td>{restarts}</td>"
            f"<td>{_e(_cpu(cpu))}</td><td>{_e(_memory(memory))}</td></tr>"
        )
    return (
        "<table><tr><th>Pod</th><th>Phase</th><th>Restarts</th><th>CPU</th><th>Memory</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _deployments(view: View) -> str:
    blocks = []
    for d in view.deployments:
        meta, status = d.metadata, d.status
        desired = d.spec.replicas if d.spec.HasField("replicas") else 1
        done = min(status.updated_replicas, desired) if desired else 0
        percent = 100 if desired == 0 else round(done * 100 / desired)
        progress = next((c for c in status.conditions if c.type == "Progressing"), None)
        state = progress.reason if progress is not None else ""
        if status.observed_generation >= meta.generation and (
            status.updated_replicas == desired == status.available_replicas == status.replicas
        ):
            state = "Complete"
        owned = [
            rs
            for rs in view.replicasets
            if rs.metadata.namespace == meta.namespace
            and any(ref.uid == meta.uid for ref in rs.metadata.owner_references)
        ]
        owned.sort(
            key=lambda rs: int(rs.metadata.annotations.get(REVISION, "0") or 0), reverse=True
        )
        history = "".join(
            f"<tr><td>{_e(rs.metadata.annotations.get(REVISION, '?'))}</td>"
            f"<td>{_e(rs.metadata.name)}</td>"
            f"<td>{_e(', '.join(c.image for c in rs.spec.template.spec.containers))}</td>"
            f"<td>{rs.status.ready_replicas}/{rs.spec.replicas}</td></tr>"
            for rs in owned
        )
        name = f"{meta.namespace}/{meta.name}"
        blocks.append(
            f'<section class=deployment id="deployment-{_e(meta.namespace)}-{_e(meta.name)}">'
            f"<h3>{_e(name)} <span class=rollout>{_e(state or 'Progressing')}</span></h3>"
            f"<p class=counts>ready {status.ready_replicas}/{desired} · up-to-date "
            f"{status.updated_replicas} · available {status.available_replicas}</p>"
            f'<div class=bar><div class="fill w{percent // 5 * 5}"></div></div>'
            "<table class=history><tr><th>Revision</th><th>ReplicaSet</th><th>Images</th>"
            f"<th>Ready</th></tr>{history}</table></section>"
        )
    return "<h2>Deployments</h2>" + ("".join(blocks) or "<p>No deployments.</p>")


def _events(view: View) -> str:
    now = time.time()
    rows = "".join(
        f"<tr class='event {_e(e.type.lower())}'><td>{_e(_age(now - _event_time(e)))}</td>"
        f"<td>{_e(e.type)}</td><td>{_e(e.reason)}</td>"
        f"<td>{_e(e.involved_object.kind)}/{_e(e.involved_object.name)}</td>"
        f"<td>{_e(e.message)}</td></tr>"
        for e in view.events
    )
    return (
        "<h2>Events</h2><table><tr><th>Age</th><th>Type</th><th>Reason</th><th>Object</th>"
        f"<th>Message</th></tr>{rows}</table>"
    )


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def pod_logs(pod: o.Pod) -> str:
    meta = pod.metadata
    source = f"/api/logs/{meta.namespace}/{meta.name}"
    containers = ", ".join(c.name for c in pod.spec.containers)
    body = (
        f"<h1>{_e(meta.namespace)}/{_e(meta.name)}</h1>"
        f"<p>node {_e(pod.spec.node_name or '-')} · {_e(pod.status.phase or 'Pending')} · "
        f"containers {_e(containers)}</p>"
        f'<pre id=log data-source="{_e(source)}"></pre>'
    )
    return _page(f"logs of {meta.name}", body)
