"""Affinity and topology spread: where a pod may go, and where it would rather go (pure).

Filters (a node passes or is rejected with Kubernetes' reason):
- `node_affinity`: the pod's requiredDuringScheduling node selector terms (ORed);
- `inter_pod` (needs the snapshot): required pod affinity (some pod the term selects runs in
  the node's topology domain, or, when none runs anywhere, the pod would match its own term:
  Kubernetes' first-pod rule), required pod anti-affinity (none does, and no running pod's
  own anti-affinity forbids this pod there), and topology spread constraints with
  `whenUnsatisfiable: DoNotSchedule` (placing the pod keeps the skew within maxSkew).

Spread constraints count the pods of the domains the pod could go to: nodes its node
selector and affinity allow (unless nodeAffinityPolicy: Ignore) whose taints it tolerates
(with nodeTaintsPolicy: Honor).

`preference` (0..100) scores what a pod prefers: preferred node affinity and pod
(anti-)affinity terms by weight, and ScheduleAnyway spread constraints (fewer matching pods
in the node's domain is better).

Vocabulary: a *domain* is the set of nodes sharing the value of a topology key
(`kubernetes.io/hostname`: one node each; `topology.kubernetes.io/zone`: a zone); a node
without the key is in no domain. Terms select pods by label (matchLabels and matchExpressions)
in the listed namespaces, else the pod's own (`namespaceSelector: {}`: every namespace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controlplane.objects.nodeselectors import matches as node_matches
from controlplane.objects.nodeselectors import term_matches
from controlplane.objects.taints import untolerated
from controlplane.scheduler.filters import Reason, Rejection
from controlplane.scheduler.snapshot import Demand, NodeInfo, Pod, Snapshot
from pilothouse.v1 import objects_pb2

MAX_SCORE = 100


def selects(selector: objects_pb2.LabelSelector, labels: Mapping[str, str]) -> bool:
    """matchLabels and matchExpressions, ANDed (an empty selector selects everything)."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present, value = req.key in labels, labels.get(req.key)
        if req.operator == "In" and not (present and value in req.values):
            return False
        if req.operator == "NotIn" and present and value in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def node_affinity(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    if not required.node_selector_terms or node_matches(required, info.node):
        return None
    return Rejection(
        (Reason.NODE_SELECTOR_MISMATCH,),
        f'node "{info.name}" matches none of the pod\'s required node affinity terms',
    )


def inter_pod_applies(snapshot: Snapshot, pod: Pod) -> bool:
    """Can `inter_pod` reject any node for this pod? (No: the pod states no required pod
    (anti-)affinity or DoNotSchedule spread, and no counted pod has a required anti-affinity.)"""
    affinity = pod.spec.affinity
    return bool(
        affinity.pod_affinity.required_during_scheduling_ignored_during_execution
        or affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
        or any(
            c.when_unsatisfiable == "DoNotSchedule" for c in pod.spec.topology_spread_constraints
        )
        or snapshot.anti_affine()
    )


def prefers(pod: Pod) -> bool:
    """Does the pod state any preference (`preference` is 0 for every node when it does not)?"""
    affinity = pod.spec.affinity
    return bool(
        affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
        or affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution
        or affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
        or any(
            c.when_unsatisfiable == "ScheduleAnyway" for c in pod.spec.topology_spread_constraints
        )
    )


def inter_pod(snapshot: Snapshot, info: NodeInfo, pod: Pod) -> Rejection | None:
    """Why `info` breaks the pod's (or a running pod's) inter-pod rules; None: it does not."""
    affinity = pod.spec.affinity
    where = f'node "{info.name}"'
    for term in affinity.pod_affinity.required_during_scheduling_ignored_during_execution:
        if not _satisfied(snapshot, info, pod, term):
            return Rejection(
                (Reason.POD_AFFINITY,),
                f"{where}: no pod the affinity term selects runs in its {term.topology_key}",
            )
    for term in affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution:
        if _matching_in_domain(snapshot, info, pod, term):
            return Rejection(
                (Reason.POD_ANTI_AFFINITY,),
                f"{where}: a pod the anti-affinity term selects runs in its {term.topology_key}",
            )
    if _forbidden_by_running(snapshot, info, pod):
        return Rejection(
            (Reason.POD_ANTI_AFFINITY,),
            f"{where}: a pod running there has an anti-affinity that excludes this pod",
        )
    for constraint in pod.spec.topology_spread_constraints:
        if constraint.when_unsatisfiable == "DoNotSchedule" and _skew_exceeded(
            snapshot, info, pod, constraint
        ):
            return Rejection(
                (Reason.TOPOLOGY_SPREAD,),
                f"{where}: one more pod there would skew {constraint.topology_key} past "
                f"{constraint.max_skew}",
            )
    return None


def preference(snapshot: Snapshot, info: NodeInfo, pod: Pod) -> float:
    """How much the pod prefers `info`, 0..100 (0 for every node when it states nothing)."""
    affinity = pod.spec.affinity
    weights = 0
    earned = 0.0
    for preferred in affinity.node_affinity.preferred_during_scheduling_ignored_during_execution:
        weights += preferred.weight
        if term_matches(preferred.preference, info.node):
            earned += preferred.weight
    for weighted in affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution:
        weights += weighted.weight
        if _matching_in_domain(snapshot, info, pod, weighted.pod_affinity_term):
            earned += weighted.weight
    anti = affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
    for weighted in anti:
        weights += weighted.weight
        if not _matching_in_domain(snapshot, info, pod, weighted.pod_affinity_term):
            earned += weighted.weight
    for constraint in pod.spec.topology_spread_constraints:
        if constraint.when_unsatisfiable != "ScheduleAnyway":
            continue
        counts = _domain_counts(snapshot, pod, constraint)
        domain = info.node.metadata.labels.get(constraint.topology_key)
        if domain is None or not counts:
            continue
        weights += 100
        most = max(counts.values())
        earned += 100 * (most - counts.get(domain, 0)) / most if most else 100
    return MAX_SCORE * earned / weights if weights else 0.0


def _namespaces(pod: Pod, term: objects_pb2.PodAffinityTerm) -> set[str] | None:
    """The namespaces a term looks at; None: every namespace."""
    if term.HasField("namespace_selector") and not term.namespaces:
        return None
    return set(term.namespaces) or {pod.metadata.namespace or "default"}


def _selected(pod: Pod, term: objects_pb2.PodAffinityTerm, other: Pod) -> bool:
    if not term.HasField("label_selector"):
        return False  # a nil selector selects nothing
    namespaces = _namespaces(pod, term)
    if namespaces is not None and (other.metadata.namespace or "default") not in namespaces:
        return False
    return selects(term.label_selector, other.metadata.labels)


def _domain(snapshot: Snapshot, key: str, value: str) -> Iterable[NodeInfo]:
    return (n for n in snapshot.nodes.values() if n.node.metadata.labels.get(key) == value)


def _matching_in_domain(
    snapshot: Snapshot, info: NodeInfo, pod: Pod, term: objects_pb2.PodAffinityTerm
) -> bool:
    value = info.node.metadata.labels.get(term.topology_key)
    if value is None:
        return False
    return any(
        _selected(pod, term, other)
        for node in _domain(snapshot, term.topology_key, value)
        for other in node.pods
        if other.metadata.uid != pod.metadata.uid
    )


def _satisfied(
    snapshot: Snapshot, info: NodeInfo, pod: Pod, term: objects_pb2.PodAffinityTerm
) -> bool:
    if term.topology_key not in info.node.metadata.labels:
        return False
    if _matching_in_domain(snapshot, info, pod, term):
        return True
    anywhere = any(
        _selected(pod, term, other)
        for node in snapshot.nodes.values()
        for other in node.pods
        if other.metadata.uid != pod.metadata.uid
    )
    return not anywhere and _selected(pod, term, pod)  # the first pod of its group


def _forbidden_by_running(snapshot: Snapshot, info: NodeInfo, pod: Pod) -> bool:
    """A running pod's required anti-affinity selects `pod` in `info`'s domain."""
    for node, other in snapshot.anti_affine():
        anti = other.spec.affinity.pod_anti_affinity
        for term in anti.required_during_scheduling_ignored_during_execution:
            key = term.topology_key
            value = node.node.metadata.labels.get(key)
            if value is None or info.node.metadata.labels.get(key) != value:
                continue
            if _selected(other, term, pod):
                return True
    return False


def _spread_selects(pod: Pod, constraint: objects_pb2.TopologySpreadConstraint, other: Pod) -> bool:
    if (other.metadata.namespace or "default") != (pod.metadata.namespace or "default"):
        return False
    if not selects(constraint.label_selector, other.metadata.labels):
        return False
    # matchLabelKeys: the pod's own values of those keys are part of the selector.
    return all(
        other.metadata.labels.get(k) == pod.metadata.labels.get(k)
        for k in constraint.match_label_keys
        if k in pod.metadata.labels
    )


def _domain_counts(
    snapshot: Snapshot, pod: Pod, constraint: objects_pb2.TopologySpreadConstraint
) -> dict[str, int]:
    """Matching pods per domain, over the nodes the pod could go to by its node rules."""
    honor_affinity = constraint.node_affinity_policy != "Ignore"
    honor_taints = constraint.node_taints_policy == "Honor"
    counts: dict[str, int] = {}
    for node in snapshot.nodes.values():
        value = node.node.metadata.labels.get(constraint.topology_key)
        if value is None:
            continue
        if honor_affinity and not _node_rules_allow(node, pod):
            continue
        if honor_taints and untolerated(node.node.spec.taints, pod.spec.tolerations):
            continue
        counts.setdefault(value, 0)
        counts[value] += sum(
            1
            for other in node.pods
            if other.metadata.uid != pod.metadata.uid and _spread_selects(pod, constraint, other)
        )
    return counts


def _node_rules_allow(info: NodeInfo, pod: Pod) -> bool:
    labels = info.node.metadata.labels
    if any(labels.get(k) != v for k, v in pod.spec.node_selector.items()):
        return False
    return node_affinity(info, pod, Demand(0, 0)) is None


def _skew_exceeded(
    snapshot: Snapshot, info: NodeInfo, pod: Pod, constraint: objects_pb2.TopologySpreadConstraint
) -> bool:
    value = info.node.metadata.labels.get(constraint.topology_key)
    if value is None:
        return True  # a node without the key is in no domain: not eligible
    counts = _domain_counts(snapshot, pod, constraint)
    if not counts:
        return False
    lowest = min(counts.values())
    if constraint.HasField("min_domains") and len(counts) < constraint.min_domains:
        lowest = 0
    mine = 1 if _spread_selects(pod, constraint, pod) else 0
    return counts.get(value, 0) + mine - lowest > constraint.max_skew
