"""Rollout planning as Kubernetes does it: fencepost rounding, RollingUpdate and Recreate steps,
proportional scaling. Pure functions over snapshots: what each revision's target becomes."""

from __future__ import annotations

import pytest
from google.protobuf.struct_pb2 import Value

from controlplane.controllers.deployment import rollout
from controlplane.controllers.deployment.rollout import Revision, Strategy
from pilothouse.v1 import objects_pb2


def spec(surge: object = None, unavailable: object = None, *, kind: str = "RollingUpdate"):
    s = objects_pb2.DeploymentSpec()
    s.strategy.type = kind
    for field, value in (("max_surge", surge), ("max_unavailable", unavailable)):
        if isinstance(value, str):
            getattr(s.strategy.rolling_update, field).CopyFrom(Value(string_value=value))
        elif isinstance(value, int):
            getattr(s.strategy.rolling_update, field).CopyFrom(Value(number_value=value))
    return s


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),  # 2.5 -> surge up to 3, unavailable down to 2
        (4, "25%", "25%", (1, 1)),
        (3, "25%", "25%", (1, 0)),  # 0.75: surge 1, unavailable 0
        (1, "25%", "25%", (1, 0)),
        (10, None, None, (3, 2)),  # defaults are 25%/25%
        (10, 0, 0, (0, 1)),  # both zero would never progress
        (10, "0%", "0%", (0, 1)),
        (10, 1, 0, (1, 0)),
        (10, "1%", "1%", (1, 0)),
        (7, "50%", "50%", (4, 3)),
    ],
)
def test_fenceposts_round_as_kubernetes_does(replicas, surge, unavailable, expected) -> None:
    strategy = rollout.strategy_of(spec(surge, unavailable), replicas)
    assert (strategy.surge, strategy.unavailable) == expected, (
        f"{replicas} replicas with maxSurge {surge} / maxUnavailable {unavailable} would "
        f"allow {strategy.surge} extra and {strategy.unavailable} unavailable pods"
    )


def test_max_unavailable_never_exceeds_replicas_and_recreate_has_none() -> None:
    assert rollout.strategy_of(spec(0, 5), 3).max_unavailable(3) == 3
    assert rollout.strategy_of(spec(kind="Recreate"), 10).max_unavailable(10) == 0
    assert rollout.strategy_of(spec(), 0).max_unavailable(0) == 0


def rev(name: str, replicas: int, available: int | None = None, **kw: object) -> Revision:
    number = int(kw.pop("number", 1))  # type: ignore[call-overload]
    return Revision(
        name=name,
        number=number,
        replicas=replicas,
        available=replicas if available is None else available,
        created=float(number),
        **kw,  # type: ignore[arg-type]
    )


def test_rolling_grows_the_new_revision_first_then_shrinks_old_within_availability() -> None:
    strategy = Strategy(recreate=False, surge=3, unavailable=2)
    old = rev("old", 10, number=1)
    new = rev("new", 0, number=2)
    assert rollout.rolling(replicas=10, strategy=strategy, new=new, olds=[old]) == {"new": 3}
    new = rev("new", 3, 0, number=2)
    # 13 pods, 3 new not available: old may lose 13 - 8 - 3 = 2.
    assert rollout.rolling(replicas=10, strategy=strategy, new=new, olds=[old]) == {"old": 8}
    old = rev("old", 8, number=1)
    assert rollout.rolling(replicas=10, strategy=strategy, new=new, olds=[old]) == {"new": 5}
    new = rev("new", 5, 0, number=2)
    assert rollout.rolling(replicas=10, strategy=strategy, new=new, olds=[old]) == {}, (
        "with no new replica available the rollout must stall at 8 available"
    )


def test_rolling_with_surge_one_and_no_unavailable_moves_one_pod_at_a_time() -> None:
    strategy = Strategy(recreate=False, surge=1, unavailable=0)
    old, new = rev("old", 10, number=1), rev("new", 1, 0, number=2)
    assert rollout.rolling(replicas=10, strategy=strategy, new=new, olds=[old]) == {}
    new = rev("new", 1, 1, number=2)
    assert rollout.rolling(replicas=10, strategy=strategy, new=new, olds=[old]) == {"old": 9}


def test_rolling_removes_unavailable_old_replicas_before_available_ones() -> None:
    strategy = Strategy(recreate=False, surge=1, unavailable=1)
    older = rev("older", 2, 0, number=1)  # crashed half of an earlier rollout
    old = rev("old", 8, 8, number=2)
    new = rev("new", 1, 0, number=3)
    plan = rollout.rolling(replicas=10, strategy=strategy, new=new, olds=[older, old])
    # 11 pods, 9 must stay available, 1 new one is not: one pod may go, and it is a crashed one.
    assert plan == {"older": 1}, f"the crashing older pods should go first, got {plan}"


def test_recreate_waits_for_old_pods_to_be_gone() -> None:
    old, new = rev("old", 3, number=1), rev("new", 0, number=2)
    assert rollout.recreate(replicas=3, new=new, olds=[old], old_pods_gone=False) == {"old": 0}
    old = rev("old", 0, number=1)
    assert rollout.recreate(replicas=3, new=new, olds=[old], old_pods_gone=False) == {}
    assert rollout.recreate(replicas=3, new=new, olds=[old], old_pods_gone=True) == {"new": 3}


def test_proportional_scaling_mid_rollout_matches_the_kubernetes_documentation() -> None:
    # kubernetes.io "proportional scaling": 10 replicas, maxSurge 3, maxUnavailable 2, a stuck
    # rollout at 8 old + 5 new, scaled to 15: 3 more for the old one, 2 for the new one.
    strategy = Strategy(recreate=False, surge=3, unavailable=2)
    old = rev("old", 8, 8, number=1, desired_annotation=10, max_annotation=13)
    new = rev("new", 5, 0, number=2, desired_annotation=10, max_annotation=13)
    assert rollout.is_scaling_event(15, [old, new])
    plan = rollout.scale(replicas=15, strategy=strategy, new=new, olds=[old], status_replicas=13)
    assert plan == {"old": 11, "new": 7}


def test_proportional_scaling_down_and_to_zero() -> None:
    strategy = Strategy(recreate=False, surge=3, unavailable=2)
    old = rev("old", 8, 8, number=1, desired_annotation=10, max_annotation=13)
    new = rev("new", 5, 0, number=2, desired_annotation=10, max_annotation=13)
    plan = rollout.scale(replicas=5, strategy=strategy, new=new, olds=[old], status_replicas=13)
    assert sum(plan.values()) == 5 + 3  # 5 replicas + maxSurge 3
    assert plan["old"] > plan["new"], "the larger revision should stay larger"
    zero = rollout.scale(replicas=0, strategy=strategy, new=new, olds=[old], status_replicas=13)
    assert zero == {"old": 0, "new": 0}


def test_a_single_active_revision_takes_the_whole_scale() -> None:
    strategy = Strategy(recreate=False, surge=1, unavailable=0)
    only = rev("only", 3, desired_annotation=3)
    drained = rev("drained", 0, number=0)
    assert rollout.is_scaling_event(30, [only, drained])
    plan = rollout.scale(
        replicas=30, strategy=strategy, new=only, olds=[drained], status_replicas=3
    )
    assert plan == {"only": 30}
    assert not rollout.is_scaling_event(30, [rev("only", 30, desired_annotation=30)])
