"""Restart policies with the default backoff on real runc, through the agent's gRPC API (as root).

What a user sees (issue #5): a container that exits 1 is restarted with growing delays (about
1, 2, 4 s with the defaults), `get pods` shows CrashLoopBackOff between attempts, and the
restart count and the last exit code are visible; with OnFailure an exit 0 ends Completed and
is not restarted; with Never a failure is never restarted.

The delays are measured from the statuses' own timestamps (previous attempt's finishedAt to
the next attempt's startedAt) and only compared with each other (ratios), never with clocks.
"""

from __future__ import annotations

import itertools

import grpc
import pytest

from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests.integration.test_agent import make_pod, wait_for
from tests.integration.test_probes import runc_agent

pytestmark = [pytest.mark.root, pytest.mark.slow]

ATTEMPTS = 4  # attempts 0..3: three delays, about 1, 2 and 4 s with the defaults


def _seconds(ts: object) -> float:
    return ts.seconds + ts.nanos / 1e9  # type: ignore[attr-defined]


async def test_crash_loop_backs_off_and_policies_stop_when_they_should() -> None:
    crash = make_pod("crash", "exit 1")  # restartPolicy Always (the default)
    done = make_pod("done", "exit 0", restart_policy="OnFailure")
    never = make_pod("never", "exit 1", restart_policy="Never")
    runs: dict[str, tuple[float, float]] = {}  # container id -> (startedAt, finishedAt)
    reasons: set[str] = set()

    def record(pods: dict[str, objects_pb2.Pod]) -> bool:
        pod = pods.get("crash")
        if pod is None or not pod.status.container_statuses:
            return False
        status = pod.status.container_statuses[0]
        if status.state.HasField("waiting"):
            reasons.add(status.state.waiting.reason)
        for term in (status.state.terminated, status.last_state.terminated):
            if term.container_id and term.HasField("finished_at"):
                runs[term.container_id] = (_seconds(term.started_at), _seconds(term.finished_at))
        return all(f"default_crash_app_{n}" in runs for n in range(ATTEMPTS))

    # The agent's default backoff: 1 s doubling to 60 s, ±10 % jitter.
    async with runc_agent() as agent, grpc.aio.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        resp = await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[crash, done, never]))
        assert dict(resp.rejected) == {}
        pods = await wait_for(stub, f"crashed {ATTEMPTS} times", record)
        listed = {
            p.metadata.name: p for p in (await stub.ListPods(agent_pb2.ListPodsRequest())).pods
        }

    attempts = [runs[f"default_crash_app_{n}"] for n in range(ATTEMPTS)]
    gaps = [attempts[n + 1][0] - attempts[n][1] for n in range(ATTEMPTS - 1)]
    print(f"restart delays (s): {', '.join(f'{g:.3f}' for g in gaps)}")
    for before, after in itertools.pairwise(gaps):
        assert after > 1.4 * before, (
            f"restart delays do not grow (expected about 1, 2, 4 s): {[round(g, 3) for g in gaps]}"
        )
    assert "CrashLoopBackOff" in reasons, f"get pods never showed CrashLoopBackOff; saw {reasons}"
    status = pods["crash"].status.container_statuses[0]
    assert status.restart_count >= ATTEMPTS - 1, f"restart count not shown: {status}"
    last = status.last_state.terminated
    assert (last.exit_code, last.reason) == (1, "Error"), f"last exit not shown: {last}"
    assert pods["crash"].status.phase == "Running", "a crash-looping Always pod is Running"

    # By now (several seconds later) the others would have been restarted if they were to be.
    done_status = listed["done"].status.container_statuses[0]
    assert listed["done"].status.phase == "Succeeded", listed["done"].status
    assert (done_status.state.terminated.reason, done_status.restart_count) == ("Completed", 0), (
        f"OnFailure restarted (or misreported) a container that exited 0: {done_status}"
    )
    never_status = listed["never"].status.container_statuses[0]
    assert listed["never"].status.phase == "Failed", listed["never"].status
    assert never_status.restart_count == 0, f"restartPolicy Never restarted: {never_status}"
    assert never_status.state.terminated.exit_code == 1
