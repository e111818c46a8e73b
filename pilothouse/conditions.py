"""Conditions: one rule for setting an object's status conditions, in every process.

Vocabulary: a condition is a `type` ("Ready", "Available", "PodScheduled" …) with a `status`
("True", "False" or "Unknown"), a machine-readable `reason`, a human `message` and times:
- lastTransitionTime: when `status` last changed;
- lastUpdateTime (Deployments, and the scheduler's PodScheduled): when anything but the times
  last changed; kept only where the caller asks for it (`update_time=True`);
- lastHeartbeatTime (Nodes): the caller's own business, carried over untouched.

Invariants of `set_condition`:
- an object has at most one condition of each type; setting one replaces it in place (order
  kept) or appends it;
- a condition whose status, reason and message are unchanged is kept exactly as it was, so an
  unchanged world computes an identical status and nobody writes;
- lastTransitionTime moves only when the status changes (or the condition had none yet);
- the result is a new list of conditions; the ones given are never modified.
Time `now` is seconds since the epoch or an aware `datetime` (the agent's clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from pilothouse.v1 import objects_pb2

Instant = float | datetime


def find_condition(
    conditions: Iterable[objects_pb2.Condition], type_: str
) -> objects_pb2.Condition | None:
    for condition in conditions:
        if condition.type == type_:
            return condition
    return None


def set_condition(
    conditions: Sequence[objects_pb2.Condition],
    wanted: objects_pb2.Condition,
    *,
    now: Instant,
    update_time: bool = True,
) -> list[objects_pb2.Condition]:
    """`conditions` with `wanted` in place of its type (see the module's invariants)."""
    result: list[objects_pb2.Condition] = []
    placed = False
    for condition in conditions:
        if condition.type != wanted.type:
            result.append(condition)
            continue
        placed = True
        result.append(_merged(condition, wanted, now=now, update_time=update_time))
    if not placed:
        result.append(_merged(None, wanted, now=now, update_time=update_time))
    return result


def seconds(stamp: Timestamp) -> float:
    """A condition's time as seconds since the epoch."""
    return stamp.seconds + stamp.nanos / 1e9


def stamp(target: Timestamp, now: Instant) -> None:
    if isinstance(now, datetime):
        target.FromDatetime(now)
    else:
        target.FromNanoseconds(int(now * 1e9))


def _merged(
    previous: objects_pb2.Condition | None,
    wanted: objects_pb2.Condition,
    *,
    now: Instant,
    update_time: bool,
) -> objects_pb2.Condition:
    if (
        previous is not None
        and (previous.status, previous.reason, previous.message)
        == (wanted.status, wanted.reason, wanted.message)
        and previous.HasField("last_transition_time")
    ):
        return previous
    merged = objects_pb2.Condition()
    if previous is not None:
        merged.CopyFrom(previous)
    merged.type = wanted.type
    merged.status = wanted.status
    merged.reason = wanted.reason
    merged.message = wanted.message
    if (
        previous is None
        or previous.status != wanted.status
        or not previous.HasField("last_transition_time")
    ):
        stamp(merged.last_transition_time, now)
    if update_time:
        stamp(merged.last_update_time, now)
    return merged
