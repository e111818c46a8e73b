"""kubectl's STATUS, READY and RESTARTS of a pod (`get pods`), init containers included.

Invariant: the same reading as kubectl's pod printer: while init containers run, STATUS is
`Init:N/M` (N done of M) or `Init:<reason>` for one that failed or waits
(`Init:CrashLoopBackOff`, `Init:Error`); sidecars (init containers with restartPolicy Always)
count among the containers of READY and their restarts among RESTARTS once started.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from pilothouse.v1 import objects_pb2 as o


def pod_status(pod: o.Pod) -> tuple[str, int, int, Timestamp | None]:
    """kubectl's STATUS for a pod, with ready containers, restarts and the last restart time.

    As kubectl prints it: while init containers run, `Init:N/M`, or `Init:<reason>` for one
    that failed or waits (`Init:CrashLoopBackOff`); sidecars (init containers that keep
    running) count among the ready containers and their restarts among the restarts."""
    reason = pod.status.reason or pod.status.phase or "Pending"
    ready = restarts = 0
    last_restart: Timestamp | None = None
    has_running = False
    sidecars = {c.name for c in pod.spec.init_containers if c.restart_policy == "Always"}
    sidecar_restarts = 0
    initializing = False
    for i, status in enumerate(pod.status.init_container_statuses):
        restarts += status.restart_count
        last_restart = _later(last_restart, status)
        state = status.state
        if status.name in sidecars:
            sidecar_restarts += status.restart_count
        if state.HasField("terminated") and state.terminated.exit_code == 0:
            continue
        if status.name in sidecars and status.started:
            ready += 1 if status.ready else 0
            continue
        if state.HasField("terminated"):
            term = state.terminated
            if term.reason:
                reason = f"Init:{term.reason}"
            else:
                reason = (
                    f"Init:Signal:{term.signal}"
                    if term.signal
                    else f"Init:ExitCode:{term.exit_code}"
                )
        elif state.HasField("waiting") and state.waiting.reason not in ("", "PodInitializing"):
            reason = f"Init:{state.waiting.reason}"
        else:
            reason = f"Init:{i}/{len(pod.spec.init_containers)}"
        initializing = True
        break
    initialized = any(c.type == "Initialized" and c.status == "True" for c in pod.status.conditions)
    if initializing and not initialized:
        return reason, ready, restarts, last_restart
    restarts = sidecar_restarts
    for status in reversed(pod.status.container_statuses):
        restarts += status.restart_count
        last_restart = _later(last_restart, status)
        state = status.state
        if state.HasField("waiting") and state.waiting.reason:
            reason = state.waiting.reason
        elif state.HasField("terminated") and state.terminated.reason:
            reason = state.terminated.reason
        elif state.HasField("terminated"):
            term = state.terminated
            reason = f"Signal:{term.signal}" if term.signal else f"ExitCode:{term.exit_code}"
        elif status.ready and state.HasField("running"):
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        pod_ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
        reason = "Running" if pod_ready else "NotReady"
    if pod.metadata.HasField("deletion_timestamp"):
        reason = "Unknown" if pod.status.reason == "NodeLost" else "Terminating"
    return reason, ready, restarts, last_restart


def _later(last: Timestamp | None, status: o.ContainerStatus) -> Timestamp | None:
    """The later of `last` and the end of the container's previous attempt."""
    previous = status.last_state.terminated
    if status.last_state.HasField("terminated") and previous.HasField("finished_at"):
        finished = previous.finished_at
        if last is None or finished.ToNanoseconds() > last.ToNanoseconds():
            return finished
    return last
