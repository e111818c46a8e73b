"""The probe workers of one running container attempt: started, ready, or to be restarted.

Semantics (the kubelet's prober workers):
- a startup probe, when there is one, runs first and alone: until it succeeds the container is
  not `started`, liveness and readiness do not run, and the container is not ready;
  failureThreshold consecutive failures end the attempt (the container is to be restarted);
- once started, liveness and readiness run side by side, each every periodSeconds, the first
  check after initialDelaySeconds counted from the container's start;
- liveness: failureThreshold consecutive failures end the attempt;
- readiness: the container is ready after successThreshold consecutive successes and not
  ready after failureThreshold consecutive failures; without a readiness probe a started
  container is ready;
- every failed check is recorded (`messages`, with the kubelet's event text, e.g.
  "Readiness probe failed: HTTP probe failed with statuscode: 404") and logged.

Invariants:
- one prober per attempt, so a restarted container starts over (not started, not ready,
  counts at zero); only an attempt re-adopted by a restarted agent resumes the started/ready
  it had (`resume`), so an agent restart does not flap the pod's readiness;
- `run()` returns only with a `Verdict` (the attempt must end); without probes it never
  returns; a handler that raises or hangs counts as a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from nodeagent import metrics
from nodeagent.probes import Handler, Kind, Outcome, Result, Target, Timing, failure, has_action
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The attempt failed a probe for good and must be killed (and restarted per policy)."""

    kind: Kind
    message: str  # e.g. "Container app failed liveness probe, will be restarted: ..."


def probes_of(container: objects_pb2.Container) -> dict[Kind, objects_pb2.Probe]:
    found: dict[Kind, objects_pb2.Probe] = {}
    for kind, name in (
        (Kind.STARTUP, "startup_probe"),
        (Kind.LIVENESS, "liveness_probe"),
        (Kind.READINESS, "readiness_probe"),
    ):
        if container.HasField(name) and has_action(getattr(container, name)):
            found[kind] = getattr(container, name)
    return found


def initial(container: objects_pb2.Container) -> tuple[bool, bool]:
    """(started, ready) of an attempt that just began running, before any probe ran."""
    probes = probes_of(container)
    started = Kind.STARTUP not in probes
    return started, started and Kind.READINESS not in probes


class ContainerProber:
    def __init__(
        self,
        *,
        container: objects_pb2.Container,
        target: Target,
        handler: Handler,
        started_at: datetime | None,
        on_change: Callable[[ContainerProber], None],
        resume: tuple[bool, bool] | None = None,
    ) -> None:
        self.container = container
        self.target = target
        self.probes = probes_of(container)
        self.started, self.ready = initial(container)
        if resume is not None:  # (started, ready) as last reported for this same attempt
            self.started = self.started or resume[0]
            self.ready = resume[1] if Kind.READINESS in self.probes else self.started
        self.messages: dict[Kind, str] = {}  # the last failure of each probe
        self._handler = handler
        self._started_at = started_at
        self._on_change = on_change
        self._log = log.bind(container=container.name, id=target.container_id)

    @property
    def probing(self) -> bool:
        return bool(self.probes)

    def unready_message(self) -> str:
        """Why the container is not ready, in the kubelet's words; empty when it is."""
        if not self.started:
            return self.messages.get(Kind.STARTUP, "")
        if not self.ready:
            return self.messages.get(Kind.READINESS, "")
        return ""

    async def run(self) -> Verdict:
        """Probe until the attempt must end; never returns while the container is healthy."""
        startup = self.probes.get(Kind.STARTUP)
        if startup is not None:
            verdict = await self._loop(Kind.STARTUP, startup)
            if verdict is not None:
                return verdict
        tasks = [
            asyncio.create_task(self._loop(kind, self.probes[kind]), name=f"{kind.value} probe")
            for kind in (Kind.LIVENESS, Kind.READINESS)
            if kind in self.probes
        ]
        if not tasks:
            await asyncio.Event().wait()
        try:
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    verdict = task.result()
                    if verdict is not None:
                        return verdict
                    tasks.remove(task)
                if not tasks:
                    await asyncio.Event().wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _age(self) -> float:
        if self._started_at is None:
            return 0.0
        return max((datetime.now(UTC) - self._started_at).total_seconds(), 0.0)

    async def _loop(self, kind: Kind, probe: objects_pb2.Probe) -> Verdict | None:
        """One probe's worker; returns a Verdict (attempt must end) or None (startup passed)."""
        timing = Timing.of(probe, kind)
        delay = timing.initial_delay - self._age()
        if delay > 0:
            await asyncio.sleep(delay)
        last: Outcome | None = None
        run = 0
        while True:
            result = await self._check(probe, timing)
            metrics.probe_result(kind.value.lower(), ok=result.ok)
            run = run + 1 if result.outcome is last else 1
            last = result.outcome
            if not result.ok:
                self._failed(kind, result, run=run, threshold=timing.failure_threshold)
            threshold = timing.success_threshold if result.ok else timing.failure_threshold
            if run >= threshold:
                verdict = self._decide(kind, result)
                if verdict is not None or (kind is Kind.STARTUP and result.ok):
                    return verdict
            await asyncio.sleep(timing.period)

    async def _check(self, probe: objects_pb2.Probe, timing: Timing) -> Result:
        try:
            # The handler honours the timeout itself; this bound only guards against a hang.
            async with asyncio.timeout(timing.timeout + 5):
                return await self._handler.check(probe, self.target, time_limit=timing.timeout)
        except TimeoutError:
            return failure(f"probe did not answer within {timing.timeout:g}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.exception("probe.handler_failed")
            return failure(f"probe error: {exc}")

    def _failed(self, kind: Kind, result: Result, *, run: int, threshold: int) -> None:
        text = f"{kind.value} probe failed: {result.message}"
        changed = self.messages.get(kind) != text
        self.messages[kind] = text
        self._log.warning(
            "probe.failed",
            probe=kind.value,
            message=result.message,
            failures=run,
            failure_threshold=threshold,
        )
        if changed and (kind is Kind.READINESS or kind is Kind.STARTUP):
            self._on_change(self)

    def _decide(self, kind: Kind, result: Result) -> Verdict | None:
        """Act on a result that reached its threshold."""
        name = self.container.name
        if kind is Kind.STARTUP:
            if not result.ok:
                return self._verdict(kind, f"Container {name} failed startup probe")
            self.started = True
            self.ready = Kind.READINESS not in self.probes
            self._log.info("probe.started", probe=kind.value)
            self._on_change(self)
            return None
        if kind is Kind.LIVENESS:
            if not result.ok:
                return self._verdict(kind, f"Container {name} failed liveness probe")
            return None
        if self.ready != result.ok:
            self.ready = result.ok
            self._log.info("probe.readiness_changed", ready=result.ok)
            self._on_change(self)
        return None

    def _verdict(self, kind: Kind, what: str) -> Verdict:
        detail = self.messages.get(kind, "")
        message = f"{what}, will be restarted" + (f" ({detail})" if detail else "")
        self._log.warning("probe.restarting", probe=kind.value, message=message)
        return Verdict(kind, message)
