"""The authorization rules as a pure decision: who may call what, for which node."""

from __future__ import annotations

from controlplane.auth.authorizer import Authorizer, Outcome
from pilothouse import pki
from pilothouse.v1 import controlplane_pb2, objects_pb2

HEARTBEAT = "/pilothouse.v1.NodeRegistry/Heartbeat"
HEARTBEATS = "/pilothouse.v1.NodeRegistry/Heartbeats"  # a stream: its servicer checks messages
REGISTER = "/pilothouse.v1.NodeRegistry/RegisterNode"


def _register(name: str) -> controlplane_pb2.RegisterNodeRequest:
    return controlplane_pb2.RegisterNodeRequest(
        node=objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=name))
    )


def test_rules() -> None:
    rules = Authorizer()
    n1 = pki.node_identity("n1")
    beat = controlplane_pb2.HeartbeatRequest(node_name="n1")
    cases = [
        (None, "/pilothouse.v1.Join/SignNodeCertificate", None, Outcome.ALLOWED),
        (None, HEARTBEAT, beat, Outcome.UNAUTHENTICATED),
        (None, "/pilothouse.v1.ControlPlane/List", None, Outcome.UNAUTHENTICATED),
        (pki.ADMIN, "/pilothouse.v1.ControlPlane/Apply", None, Outcome.ALLOWED),
        (pki.ADMIN, "/pilothouse.v1.Tokens/CreateToken", None, Outcome.ALLOWED),
        (n1, HEARTBEAT, beat, Outcome.ALLOWED),
        (n1, REGISTER, _register("n1"), Outcome.ALLOWED),
        (n1, REGISTER, _register("n2"), Outcome.FORBIDDEN),
        (n1, HEARTBEAT, controlplane_pb2.HeartbeatRequest(node_name="n2"), Outcome.FORBIDDEN),
        (n1, "/pilothouse.v1.ControlPlane/Get", None, Outcome.FORBIDDEN),
        (n1, "/pilothouse.v1.Tokens/ListTokens", None, Outcome.FORBIDDEN),
        (pki.CONTROLPLANE, HEARTBEAT, beat, Outcome.FORBIDDEN),
        (n1, HEARTBEATS, None, Outcome.ALLOWED),
        (pki.CONTROLPLANE, HEARTBEATS, None, Outcome.FORBIDDEN),
        (None, HEARTBEATS, None, Outcome.UNAUTHENTICATED),
        (pki.Identity(user="mallory"), "/pilothouse.v1.ControlPlane/List", None, Outcome.FORBIDDEN),
        # A node name in CN without the nodes group is no node.
        (pki.Identity(user="system:node:n1"), HEARTBEAT, beat, Outcome.FORBIDDEN),
    ]
    for identity, method, request, expected in cases:
        decision = rules.decide(identity, method, request)
        assert decision.outcome is expected, (
            f"{identity or 'anonymous'} calling {method}: {decision.outcome} ({decision.reason})"
        )
        assert decision.allowed or decision.reason


def test_extra_node_scoped_methods() -> None:
    method = "/pilothouse.v1.PodStatus/Report"
    rules = Authorizer({method: lambda request: request.node_name})
    n1 = pki.node_identity("n1")
    mine = controlplane_pb2.HeartbeatRequest(node_name="n1")
    theirs = controlplane_pb2.HeartbeatRequest(node_name="n2")
    assert rules.decide(n1, method, mine).allowed
    assert rules.decide(n1, method, theirs).outcome is Outcome.FORBIDDEN
    assert rules.decide(n1, HEARTBEAT, mine).outcome is Outcome.FORBIDDEN
