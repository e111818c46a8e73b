"""Where a pod may run: affinity, topology spread constraints, priority; and label selectors'
`matchExpressions`, which only the scheduler evaluates.

Rules (core/v1 validation, apimachinery's wording):
- node selector requirements: operator In/NotIn with values, Exists/DoesNotExist without,
  Gt/Lt with one integer; a required node affinity has at least one term; preferred terms
  weigh 1-100;
- pod (anti-)affinity terms: a topologyKey, a valid label selector; `namespaceSelector` may
  only be empty (every namespace): Pilothouse does not select namespaces by label;
- topology spread: maxSkew > 0, a topologyKey, whenUnsatisfiable DoNotSchedule or
  ScheduleAnyway, minDomains > 0 and only with DoNotSchedule;
- `matchExpressions` anywhere else (a Deployment's selector, a claim's …) is Forbidden with
  its path: those selectors are evaluated by matchLabels alone, and an expression silently
  ignored would select the wrong objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.manifests.validation.meta import labels
from pilothouse.v1 import objects_pb2

NODE_OPERATORS = ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn")
LABEL_OPERATORS = ("DoesNotExist", "Exists", "In", "NotIn")
WHEN_UNSATISFIABLE = ("DoNotSchedule", "ScheduleAnyway")
POLICIES = ("Honor", "Ignore")
# Paths (JSON names) under which matchExpressions are evaluated.
_EVALUATED = ("affinity", "topologySpreadConstraints")


def pod(found: Findings, spec: objects_pb2.PodSpec, path: str) -> None:
    if spec.HasField("affinity"):
        _affinity(found, spec.affinity, f"{path}.affinity")
    for i, constraint in enumerate(spec.topology_spread_constraints):
        _spread(found, constraint, f"{path}.topologySpreadConstraints[{i}]")
    if spec.priority_class_name:
        for error in names.dns1123_subdomain(spec.priority_class_name):
            found.invalid(f"{path}.priorityClassName", spec.priority_class_name, error)


def unevaluated_expressions(found: Findings, message: Message) -> None:
    """Forbid matchExpressions in every label selector of `message` that nothing evaluates."""
    for path in _expression_paths(message, ""):
        if not any(f".{part}" in f".{path}" for part in _EVALUATED):
            found.forbidden(
                path,
                "matchExpressions are evaluated only in affinity and topologySpreadConstraints "
                "on this cluster; select with matchLabels here",
            )


def _expression_paths(message: Message, path: str) -> Iterator[str]:
    if isinstance(message, objects_pb2.LabelSelector) and message.match_expressions:
        yield f"{path}.matchExpressions" if path else "matchExpressions"
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            continue
        where = f"{path}.{field.json_name}" if path else field.json_name
        if field.is_repeated:
            for i, item in enumerate(value):
                yield from _expression_paths(item, f"{where}[{i}]")
        else:
            yield from _expression_paths(value, where)


def _affinity(found: Findings, affinity: objects_pb2.Affinity, path: str) -> None:
    node = affinity.node_affinity
    where = f"{path}.nodeAffinity"
    if node.HasField("required_during_scheduling_ignored_during_execution"):
        required = node.required_during_scheduling_ignored_during_execution
        field = f"{where}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        if not required.node_selector_terms:
            found.required(field, "must have at least one node selector term")
        for i, term in enumerate(required.node_selector_terms):
            node_term(found, term, f"{field}[{i}]")
    for i, preferred in enumerate(node.preferred_during_scheduling_ignored_during_execution):
        field = f"{where}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        _weight(found, preferred.weight, f"{field}.weight")
        node_term(found, preferred.preference, f"{field}.preference")
    for holder, name in (
        (affinity.pod_affinity, "podAffinity"),
        (affinity.pod_anti_affinity, "podAntiAffinity"),
    ):
        where = f"{path}.{name}"
        for i, term in enumerate(holder.required_during_scheduling_ignored_during_execution):
            _pod_term(found, term, f"{where}.requiredDuringSchedulingIgnoredDuringExecution[{i}]")
        for i, weighted in enumerate(holder.preferred_during_scheduling_ignored_during_execution):
            field = f"{where}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            _weight(found, weighted.weight, f"{field}.weight")
            _pod_term(found, weighted.pod_affinity_term, f"{field}.podAffinityTerm")


def node_term(found: Findings, term: objects_pb2.NodeSelectorTerm, path: str) -> None:
    for i, requirement in enumerate(term.match_expressions):
        _node_requirement(found, requirement, f"{path}.matchExpressions[{i}]", field=False)
    for i, requirement in enumerate(term.match_fields):
        _node_requirement(found, requirement, f"{path}.matchFields[{i}]", field=True)


def _node_requirement(
    found: Findings, requirement: objects_pb2.NodeSelectorRequirement, path: str, *, field: bool
) -> None:
    if field:
        if requirement.key != "metadata.name":
            found.unsupported(f"{path}.key", requirement.key, ("metadata.name",))
        if requirement.operator not in ("In", "NotIn"):
            found.unsupported(f"{path}.operator", requirement.operator, ("In", "NotIn"))
        elif len(requirement.values) != 1:
            found.required(
                f"{path}.values",
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            )
        return
    for error in names.qualified_name(requirement.key):
        found.invalid(f"{path}.key", requirement.key, error)
    operator, values = requirement.operator, requirement.values
    if operator in ("In", "NotIn"):
        if not values:
            found.required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            found.forbidden(
                f"{path}.values",
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )
    elif operator in ("Gt", "Lt"):
        if len(values) != 1:
            found.required(
                f"{path}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'"
            )
        elif not values[0].lstrip("-").isdigit():
            found.invalid(f"{path}.values[0]", values[0], "must be an integer")
    else:
        found.unsupported(f"{path}.operator", operator, NODE_OPERATORS)


def _pod_term(found: Findings, term: objects_pb2.PodAffinityTerm, path: str) -> None:
    if not term.topology_key:
        found.required(f"{path}.topologyKey", "can not be empty")
    else:
        for error in names.qualified_name(term.topology_key):
            found.invalid(f"{path}.topologyKey", term.topology_key, error)
    if term.HasField("label_selector"):
        label_selector(found, term.label_selector, f"{path}.labelSelector")
    selector = term.namespace_selector
    if selector.match_labels or selector.match_expressions:
        found.forbidden(
            f"{path}.namespaceSelector",
            "selecting namespaces by label is not supported; list them in `namespaces`, or "
            "write `namespaceSelector: {}` for every namespace",
        )
    for i, namespace in enumerate(term.namespaces):
        for error in names.dns1123_label(namespace):
            found.invalid(f"{path}.namespaces[{i}]", namespace, error)


def label_selector(found: Findings, selector: objects_pb2.LabelSelector, path: str) -> None:
    labels(found, f"{path}.matchLabels", selector.match_labels)
    for i, requirement in enumerate(selector.match_expressions):
        where = f"{path}.matchExpressions[{i}]"
        for error in names.qualified_name(requirement.key):
            found.invalid(f"{where}.key", requirement.key, error)
        if requirement.operator in ("In", "NotIn"):
            if not requirement.values:
                found.required(
                    f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                )
        elif requirement.operator in ("Exists", "DoesNotExist"):
            if requirement.values:
                found.forbidden(
                    f"{where}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
        else:
            found.unsupported(f"{where}.operator", requirement.operator, LABEL_OPERATORS)


def _spread(found: Findings, constraint: objects_pb2.TopologySpreadConstraint, path: str) -> None:
    if constraint.max_skew <= 0:
        found.invalid(f"{path}.maxSkew", constraint.max_skew, "must be greater than zero")
    if not constraint.topology_key:
        found.required(f"{path}.topologyKey", "can not be empty")
    if constraint.when_unsatisfiable not in WHEN_UNSATISFIABLE:
        found.unsupported(
            f"{path}.whenUnsatisfiable", constraint.when_unsatisfiable, WHEN_UNSATISFIABLE
        )
    if constraint.HasField("min_domains"):
        if constraint.min_domains <= 0:
            found.invalid(f"{path}.minDomains", constraint.min_domains, "must be greater than 0")
        elif constraint.when_unsatisfiable != "DoNotSchedule":
            found.invalid(
                f"{path}.minDomains",
                constraint.min_domains,
                "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not "
                + constraint.when_unsatisfiable,
            )
    for field, json_name in (
        ("node_affinity_policy", "nodeAffinityPolicy"),
        ("node_taints_policy", "nodeTaintsPolicy"),
    ):
        if constraint.HasField(field) and getattr(constraint, field) not in POLICIES:
            found.unsupported(f"{path}.{json_name}", getattr(constraint, field), POLICIES)
    if constraint.HasField("label_selector"):
        label_selector(found, constraint.label_selector, f"{path}.labelSelector")
    _keys(found, constraint.match_label_keys, f"{path}.matchLabelKeys")


def _keys(found: Findings, keys: Iterable[str], path: str) -> None:
    for i, key in enumerate(keys):
        for error in names.qualified_name(key):
            found.invalid(f"{path}[{i}]", key, error)


def _weight(found: Findings, weight: int, path: str) -> None:
    if not 1 <= weight <= 100:
        found.invalid(path, weight, "must be in the range 1-100")
