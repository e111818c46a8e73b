"""Node selector terms (pure), as a PersistentVolume's node affinity (and a pod's required
node affinity) states them.

Rules (core/v1 NodeSelector): the terms are ORed, the requirements of one term ANDed; a
term with no requirements matches nothing. matchExpressions read node labels with In, NotIn,
Exists, DoesNotExist, Gt and Lt; matchFields read `metadata.name` with In and NotIn.
"""

from __future__ import annotations

from collections.abc import Mapping

from pilothouse.v1 import objects_pb2


def _requirement(req: objects_pb2.NodeSelectorRequirement, values: Mapping[str, str]) -> bool:
    present = req.key in values
    value = values.get(req.key, "")
    op = req.operator
    if op == "In":
        return present and value in req.values
    if op == "NotIn":
        return not present or value not in req.values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(req.values) == 1:
        try:
            have, bound = int(value), int(req.values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def term_matches(term: objects_pb2.NodeSelectorTerm, node: objects_pb2.Node) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False
    labels = node.metadata.labels
    fields = {"metadata.name": node.metadata.name}
    return all(_requirement(r, labels) for r in term.match_expressions) and all(
        _requirement(r, fields) for r in term.match_fields
    )


def matches(selector: objects_pb2.NodeSelector, node: objects_pb2.Node) -> bool:
    """Does `node` satisfy `selector` (an empty selector: every node does)?"""
    if not selector.node_selector_terms:
        return True
    return any(term_matches(t, node) for t in selector.node_selector_terms)


def for_node(name: str) -> objects_pb2.VolumeNodeAffinity:
    """Node affinity pinning to one node by name (matchFields metadata.name: it holds whatever
    labels the node has)."""
    affinity = objects_pb2.VolumeNodeAffinity()
    term = affinity.required.node_selector_terms.add()
    term.match_fields.add(key="metadata.name", operator="In", values=[name])
    return affinity
