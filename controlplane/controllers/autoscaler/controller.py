"""The HorizontalPodAutoscaler controller: every sync period, each HPA's target is scaled to
what its pods' CPU or memory use asks for (`algorithm`), as kube-controller-manager's does.

One reconcile of "namespace/name":
1. the target (`spec.scaleTargetRef`: a Deployment, ReplicaSet, ReplicationController or
   StatefulSet) and its current replicas; another kind, or a target that is missing, is
   AbleToScale=False (FailedGetScale) and an event, nothing else;
2. its pods (the target's selector, in the HPA's namespace; not terminating, not finished),
   their requests and their latest usage (`MetricsSource`: the agents' samples);
3. a proposal per metric, the largest wins, then stabilization (the recommendations of the
   last window, kept in memory per HPA) and the scaling policies (the changes this controller
   made within each period), then min/max replicas (the proposal itself: `proposal`);
4. a different count is written to the target's spec.replicas (compare-and-swap; a conflict
   is the engine's retry) with a SuccessfulRescale event;
5. the HPA's status: current/desired replicas, current metrics, lastScaleTime, conditions
   AbleToScale, ScalingActive, ScalingLimited; written only when it changed.
Then the key comes back after the sync period (`requeue_after`). A status write changes no
generation, so it does not bring the key back early.

Invariants: the recommendations and scale events live in memory (as Kubernetes' do): after a
leader change a new controller starts with none, which can only delay a scale-down; scaling
is never done for an HPA whose target has 0 replicas (scaling disabled, as Kubernetes').
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from google.protobuf.message import Message

from controlplane import metrics
from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.autoscaler import algorithm, proposal
from controlplane.controllers.autoscaler.proposal import PodUsage
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ChangeType, ObjectStore
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.controller import Controller
from controlplane.store import NotFound
from pilothouse.conditions import set_condition
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

SCALABLE = {
    "Deployment": Kind.DEPLOYMENT,
    "ReplicaSet": Kind.REPLICASET,
    "ReplicationController": Kind.REPLICATIONCONTROLLER,
    "StatefulSet": Kind.STATEFULSET,
}
_HISTORY_LIMIT = 64


# namespace -> pod name -> its latest sample
MetricsSource = Callable[[str], Awaitable[Mapping[str, PodUsage]]]


@dataclass(frozen=True, slots=True)
class Settings:
    sync_period: float = 15.0
    downscale_stabilization: float = 300.0
    tolerance: float = algorithm.DEFAULT_TOLERANCE


class HorizontalPodAutoscalers:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        autoscalers: Informer,
        pods: Informer,
        metrics_source: MetricsSource,
        events: EventRecorder,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._objects = objects
        self._autoscalers = autoscalers
        self._pods = pods
        self._metrics = metrics_source
        self._events = events
        self._settings = settings or Settings()
        self._clock = clock or SystemClock()
        self._recommendations: dict[str, list[algorithm.Recommendation]] = {}
        self._scale_events: dict[str, list[algorithm.ScaleEvent]] = {}

    def keys_for(self, notice: Notice) -> list[str]:
        if notice.type is ChangeType.DELETED:
            self._recommendations.pop(notice.key, None)
            self._scale_events.pop(notice.key, None)
            return []
        old = notice.old
        if old is not None and old.metadata.generation == notice.object.metadata.generation:
            return []  # a status write (ours): the key comes back after the sync period
        return [notice.key]

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        hpa = self._autoscalers.get(namespace, name)
        if not isinstance(hpa, objects_pb2.HorizontalPodAutoscaler):
            return Result()
        status = objects_pb2.HorizontalPodAutoscalerStatus()
        status.CopyFrom(hpa.status)
        status.observed_generation = hpa.metadata.generation
        now = self._clock.now()
        try:
            await self._evaluate(key, hpa, status, now=now)
        finally:
            if status != hpa.status:
                updated = objects_pb2.HorizontalPodAutoscaler()
                updated.CopyFrom(hpa)
                updated.status.CopyFrom(status)
                with contextlib.suppress(NotFound):
                    await self._objects.update_status(updated)
        return Result(requeue_after=self._settings.sync_period)

    async def _evaluate(
        self,
        key: str,
        hpa: objects_pb2.HorizontalPodAutoscaler,
        status: objects_pb2.HorizontalPodAutoscalerStatus,
        *,
        now: float,
    ) -> None:
        ref = hpa.spec.scale_target_ref
        kind = SCALABLE.get(ref.kind)
        if kind is None:
            message = (
                f"the HPA controller was unable to get the target's current scale: "
                f'{ref.kind or "(no kind)"} "{ref.name}" cannot be scaled'
            )
            self._condition(status, "AbleToScale", "False", "FailedGetScale", message)
            await self._events.record(hpa, EventType.WARNING, "FailedGetScale", message)
            return
        try:
            target = await self._objects.get(kind, hpa.metadata.namespace, ref.name)
        except NotFound:
            message = (
                "the HPA controller was unable to get the target's current scale: "
                f'{kind.info.plural} "{ref.name}" not found'
            )
            self._condition(status, "AbleToScale", "False", "FailedGetScale", message)
            await self._events.record(hpa, EventType.WARNING, "FailedGetScale", message)
            return
        current = target.spec.replicas if target.spec.HasField("replicas") else 1
        status.current_replicas = current
        self._condition(
            status, "AbleToScale", "True", "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )  # fmt: skip
        minimum = hpa.spec.min_replicas if hpa.spec.HasField("min_replicas") else 1
        maximum = hpa.spec.max_replicas
        if current == 0 and minimum != 0:
            status.desired_replicas = 0
            self._condition(
                status, "ScalingActive", "False", "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )  # fmt: skip
            return
        try:
            evaluation = await self._proposal(hpa, target, current)
        except proposal.Unmeasurable as why:
            status.desired_replicas = current
            self._condition(status, "ScalingActive", "False", "FailedGetResourceMetric", str(why))
            await self._events.record(hpa, EventType.WARNING, "FailedGetResourceMetric", str(why))
            return
        del status.current_metrics[:]
        status.current_metrics.extend(evaluation.metric_statuses)
        self._condition(
            status, "ScalingActive", "True", "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from resource metrics",
        )  # fmt: skip
        desired = self._stabilize(key, hpa, evaluation.proposal, current=current, now=now)
        clamped = min(max(desired, minimum), maximum)
        if clamped != desired:
            reason = "TooManyReplicas" if desired > maximum else "TooFewReplicas"
            self._condition(
                status, "ScalingLimited", "True", reason,
                f"the desired replica count is {'more' if desired > maximum else 'less'} than "
                f"the {'maximum' if desired > maximum else 'minimum'} replica count",
            )  # fmt: skip
        else:
            self._condition(
                status, "ScalingLimited", "False", "DesiredWithinRange",
                "the desired count is within the acceptable range",
            )  # fmt: skip
        status.desired_replicas = clamped
        if clamped != current:
            await self._scale(kind, target, clamped)
            self._scale_events.setdefault(key, []).append(
                algorithm.ScaleEvent(at=now, change=clamped - current)
            )
            status.last_scale_time.FromDatetime(datetime.now(UTC))
            status.current_replicas = clamped
            direction = "above" if clamped > current else "below"
            message = f"New size: {clamped}; reason: {evaluation.reason} {direction} target"
            await self._events.record(hpa, EventType.NORMAL, "SuccessfulRescale", message)
            metrics.HPA_SCALES.labels(direction="up" if clamped > current else "down").inc()
            log.info(
                "hpa.scaled",
                hpa=key,
                target=f"{kind.info.plural}/{target.metadata.name}",
                replicas=clamped,
                previous=current,
            )

    async def _proposal(
        self, hpa: objects_pb2.HorizontalPodAutoscaler, target: Message, current: int
    ) -> proposal.Evaluation:
        namespace = hpa.metadata.namespace
        selector = proposal.selector_of(target)
        pods = [
            p
            for p in self._pods.list(namespace, selector)
            if isinstance(p, objects_pb2.Pod)
            and not p.metadata.HasField("deletion_timestamp")
            and p.status.phase not in ("Succeeded", "Failed")
        ]
        usage = await self._metrics(namespace)
        return proposal.propose(
            hpa, pods=pods, usage=usage, current=current, tolerance=self._settings.tolerance
        )

    def _stabilize(
        self,
        key: str,
        hpa: objects_pb2.HorizontalPodAutoscaler,
        proposal: int,
        *,
        current: int,
        now: float,
    ) -> int:
        up, down = _rules(hpa, self._settings)
        history = self._recommendations.setdefault(key, [])
        stable = algorithm.stabilized(
            proposal, current=current, history=history, now=now, up=up, down=down
        )
        history.append(algorithm.Recommendation(at=now, replicas=proposal))
        longest = max(up.stabilization_seconds, down.stabilization_seconds)
        history[:] = [r for r in history if now - r.at <= longest][-_HISTORY_LIMIT:]
        events = self._scale_events.setdefault(key, [])
        longest_period = max((p.period_seconds for p in (*up.policies, *down.policies)), default=0)
        events[:] = [e for e in events if now - e.at <= longest_period]
        return algorithm.limited(stable, current=current, events=events, now=now, up=up, down=down)

    async def _scale(self, kind: Kind, target: Message, replicas: int) -> None:
        updated = type(target)()
        updated.CopyFrom(target)
        updated.spec.replicas = replicas
        await self._objects.update(updated)  # CAS on the resourceVersion read

    @staticmethod
    def _condition(
        status: objects_pb2.HorizontalPodAutoscalerStatus,
        kind: str,
        value: str,
        reason: str,
        message: str,
    ) -> None:
        merged = set_condition(
            status.conditions,
            objects_pb2.Condition(type=kind, status=value, reason=reason, message=message),
            now=time.time(),
            update_time=False,  # a status write only when something changed
        )
        del status.conditions[:]
        status.conditions.extend(merged)


def _rules(
    hpa: objects_pb2.HorizontalPodAutoscaler, settings: Settings
) -> tuple[algorithm.Rules, algorithm.Rules]:
    behavior = hpa.spec.behavior
    up = (
        _rule(behavior.scale_up, algorithm.DEFAULT_SCALE_UP)
        if behavior.HasField("scale_up")
        else algorithm.DEFAULT_SCALE_UP
    )
    default_down = algorithm.default_scale_down(settings.downscale_stabilization)
    down = (
        _rule(behavior.scale_down, default_down)
        if behavior.HasField("scale_down")
        else default_down
    )
    return up, down


def _rule(given: objects_pb2.HPAScalingRules, default: algorithm.Rules) -> algorithm.Rules:
    return algorithm.Rules(
        stabilization_seconds=float(given.stabilization_window_seconds)
        if given.HasField("stabilization_window_seconds")
        else default.stabilization_seconds,
        select=given.select_policy or default.select,
        policies=tuple(algorithm.Policy(p.type, p.value, p.period_seconds) for p in given.policies)
        or default.policies,
    )


def horizontal_pod_autoscaler_controller(
    objects: ObjectStore,
    *,
    autoscalers: Informer,
    pods: Informer,
    metrics_source: MetricsSource,
    events: EventRecorder,
    settings: Settings | None = None,
    clock: Clock | None = None,
) -> Controller:
    """The HPA controller, subscribed to the HPA informer (which must also run)."""
    reconciler = HorizontalPodAutoscalers(
        objects,
        autoscalers=autoscalers,
        pods=pods,
        metrics_source=metrics_source,
        events=events,
        settings=settings,
        clock=clock,
    )
    controller = Controller(
        "controller.horizontalpodautoscaler",
        reconciler,
        workers=2,
        clock=clock,
        wait_for=(autoscalers, pods),
    )

    def enqueue(notice: Notice) -> None:
        for key in reconciler.keys_for(notice):
            controller.enqueue(key)

    autoscalers.add_handler(enqueue)
    return controller
