"""A workload reconciler's wiring, declared once: the object store it reads and writes
through, where its events go, its clock, its caches, and the controller that runs it.

A reconciler is a keyword-only dataclass that extends `Reconciling` with its caches (and
memory of its own, as fields with `init=False`), names its controller (`NAME`), says which
caches it reads (`caches`: the controller starts once they have synced) and which it hears
from (`watched`: each notice enqueues what `keys_for` names; by default the key of the
`OWNER` kind object the notice concerns, `objects.owners.key_of`); `controller()` is then
the `reconcile.Controller` that runs it, e.g.
`CronJobReconciler(objects=objects, cronjobs=..., jobs=...).controller()`.
A clock of None is the system's; a test passes a manual one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from google.protobuf.message import Message

from controlplane.cache.informer import Informer
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore, owners
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.controller import Controller
from controlplane.store import NotFound

M = TypeVar("M", bound=Message)


@dataclass(kw_only=True, eq=False)
class Reconciling:
    objects: ObjectStore
    events: EventRecorder | None = None  # None: no events are recorded
    clock: Clock = field(default_factory=SystemClock)

    NAME: ClassVar[str] = ""  # the controller's, e.g. "controller.cronjob"
    OWNER: ClassVar[type[Message] | None] = None  # the kind of its keys' objects

    def __post_init__(self) -> None:
        if self.clock is None:  # as the controllers' callers pass "no clock"
            self.clock = SystemClock()

    def caches(self) -> tuple[Informer, ...]:
        """The informers it reads."""
        raise NotImplementedError

    def watched(self) -> tuple[Informer, ...]:
        """The informers whose notices concern it (default: every cache it reads)."""
        return self.caches()

    def keys_for(self, notice: Any) -> str | list[str] | None:
        """The key, or keys, a notice means to it (None: nothing); by default the key of the
        `OWNER` object it is, or that controls it."""
        if self.OWNER is None:
            raise NotImplementedError
        return owners.key_of(notice.object, owner=self.OWNER)

    async def reconcile(self, key: str) -> Result:
        raise NotImplementedError

    def controller_name(self) -> str:
        return self.NAME

    async def write_status(self, obj: M, status: Message) -> M:
        """Write `status` as `obj`'s when it differs (compare-and-swap on `obj`'s
        resourceVersion); the object as stored now (`obj` when nothing was written, or when
        it is gone)."""
        if status == obj.status:  # type: ignore[attr-defined]
            return obj
        updated = type(obj)()
        updated.CopyFrom(obj)
        updated.status.CopyFrom(status)  # type: ignore[attr-defined]
        try:
            return await self.objects.update_status(updated)  # type: ignore[return-value]
        except NotFound:
            return obj

    def controller(self, *, workers: int = 2) -> Controller:
        """The controller that runs this reconciler, subscribed to its informers (which must
        also run)."""
        controller = Controller(
            self.controller_name(),
            self,
            workers=workers,
            clock=self.clock,
            wait_for=self.caches(),
        )
        controller.follow(self.watched(), self.keys_for)
        return controller
