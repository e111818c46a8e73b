"""Informers: a local, watch-fed copy of every object of one kind, and a stream of what changed.

Vocabulary:
- cache: the informer's dict of objects by (namespace, name), as of `revision`.
- handler: a plain function called with each `Notice` (ADDED / MODIFIED / DELETED and the
  object); handlers must not block (they typically add keys to a work queue).
- synced: the first full list has been loaded into the cache.

Invariants:
- The cache only moves forward: it is replaced by a list at revision R, then changed by watch
  events with revision > R, in order. Nothing is missed between list and watch.
- `Compacted` (the watch fell too far behind) is answered by listing again; the difference
  between the old cache and the new list is delivered to handlers as notices, so a handler
  sees every object that changed while the watch was down (level-triggered consumers need no
  more). `Unavailable` and other store errors are retried with capped exponential backoff,
  resuming the watch from the last revision seen.
- Objects handed out are the cache's own: callers must copy before changing them.
- `list(namespace)` costs the objects of that namespace, not of the whole kind;
  `indexed(index, value)` the objects an index files under that value (every informer has
  `OWNER`, the controlling owner's uid, read as `owned_by(uid)`; a pod informer's consumers
  add `NODE`, the node a pod is bound to). Indexes hold the same objects as the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from google.protobuf.message import Message

from controlplane.objects import ChangeType, LabelMatcher, ObjectStore, owners
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.store import Compacted, StoreError
from pilothouse.kinds import Kind

log = structlog.get_logger(__name__)

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class Notice:
    """One change of one cached object. `old` is the previous cached state (None if new)."""

    type: ChangeType
    object: Message
    old: Message | None = None

    @property
    def key(self) -> str:
        return object_key(self.object)


Handler = Callable[[Notice], None]
IndexKey = Callable[[Message], "str | None"]

OWNER = "owner"  # every informer's: by controlling owner uid
NODE = "node"  # a pod informer's, added by who reads it: by `pod_node`


def object_key(obj: Message) -> str:
    """ "namespace/name" (or "name" for cluster-scoped objects): the usual work-queue key."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


class Informer:
    """List + watch of one kind (optionally one namespace) into a local cache. A Runnable."""

    def __init__(
        self,
        objects: ObjectStore,
        kind: Kind,
        namespace: str | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.name = f"informer.{kind.info.plural}"
        self.kind = kind
        self._objects = objects
        self._namespace = namespace
        self._clock = clock or SystemClock()
        self._cache: dict[tuple[str, str], Message] = {}
        self._by_namespace: dict[str, dict[str, Message]] = {}  # the same objects, by namespace
        self._index_keys: dict[str, IndexKey] = {OWNER: _controller_uid}
        self._indexes: dict[str, dict[str, dict[tuple[str, str], Message]]] = {OWNER: {}}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self.revision = 0

    # ---------------------------------------------------------------- reading

    def get(self, namespace: str, name: str) -> Message | None:
        return self._cache.get((namespace, name))

    def list(
        self, namespace: str | None = None, selector: LabelMatcher | None = None
    ) -> list[Message]:
        if namespace is None:
            candidates = self._cache.values()
        else:
            candidates = self._by_namespace.get(namespace, {}).values()
        if selector is None:
            return list(candidates)
        return [obj for obj in candidates if selector.matches(obj.metadata.labels)]

    def owned_by(self, uid: str) -> list[Message]:
        """The cached objects whose controlling owner (ownerReference with controller) is `uid`."""
        return self.indexed(OWNER, uid)

    def indexed(self, index: str, value: str) -> list[Message]:
        """The cached objects that `index` files under `value`."""
        return list(self._indexes[index].get(value, {}).values())

    def add_index(self, index: str, key: IndexKey) -> None:
        """Keep an index of the cache by `key(obj)` (None: not filed) from now on; adding
        an index of the same name again keeps the first."""
        if index in self._indexes:
            return
        self._index_keys[index] = key
        self._indexes[index] = {}
        for cache_key, obj in self._cache.items():
            self._file(index, cache_key, None, obj)

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # --------------------------------------------------------------- handlers

    def add_handler(self, handler: Handler) -> None:
        """Call `handler` for every change from now on; the cached objects are replayed first
        as ADDED so a late subscriber misses nothing."""
        self._handlers.append(handler)
        for obj in list(self._cache.values()):
            self._call(handler, Notice(ChangeType.ADDED, obj))

    @property
    def handlers(self) -> tuple[Handler, ...]:
        return tuple(self._handlers)

    def remove_handler(self, handler: Handler) -> None:
        """Stop calling `handler` (a leader's parts unsubscribe when their term ends)."""
        self._handlers = [h for h in self._handlers if h is not handler]

    # ---------------------------------------------------------------- running

    async def run(self) -> None:
        backoff = INITIAL_BACKOFF
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                # A watch that ends without an error (the store closed it): watch again.
                backoff = INITIAL_BACKOFF
            except Compacted:
                log.info("informer.relist", kind=self.kind.info.plural, revision=self.revision)
                need_list = True
                backoff = INITIAL_BACKOFF
            except StoreError as error:
                log.warning(
                    "informer.watch_failed",
                    kind=self.kind.info.plural,
                    error=str(error),
                    retry_in=backoff,
                )
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _relist(self) -> None:
        listing = await self._objects.list(self.kind, self._namespace)
        fresh = {(o.metadata.namespace, o.metadata.name): o for o in listing.items}
        old = self._cache
        self._cache = fresh
        self._by_namespace = {}
        self._indexes = {index: {} for index in self._index_keys}
        for (namespace, name), obj in fresh.items():
            self._by_namespace.setdefault(namespace, {})[name] = obj
            self._refile((namespace, name), None, obj)
        self.revision = listing.revision
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._notify(Notice(ChangeType.ADDED, obj))
            elif before.metadata.resource_version != obj.metadata.resource_version:
                self._notify(Notice(ChangeType.MODIFIED, obj, before))
        for key, before in old.items():
            if key not in fresh:
                self._notify(Notice(ChangeType.DELETED, before, before))
        if not self._synced.is_set():
            self._synced.set()
            log.debug("informer.synced", kind=self.kind.info.plural, objects=len(fresh))

    async def _watch(self) -> None:
        async for change in self._objects.watch(self.kind, self._namespace, since=self.revision):
            obj = change.object
            key = (obj.metadata.namespace, obj.metadata.name)
            before = self._cache.get(key)
            if change.type is ChangeType.DELETED:
                self._cache.pop(key, None)
                self._by_namespace.get(key[0], {}).pop(key[1], None)
                self._refile(key, before, None)
            else:
                self._cache[key] = obj
                self._by_namespace.setdefault(key[0], {})[key[1]] = obj
                self._refile(key, before, obj)
            self.revision = change.revision
            if change.type is ChangeType.ADDED and before is not None:
                notice = Notice(ChangeType.MODIFIED, obj, before)
            else:
                notice = Notice(change.type, obj, before)
            self._notify(notice)

    def _refile(self, key: tuple[str, str], before: Message | None, after: Message | None) -> None:
        for index in self._indexes:
            self._file(index, key, before, after)

    def _file(
        self, index: str, key: tuple[str, str], before: Message | None, after: Message | None
    ) -> None:
        """Move `key` in `index` from where `before` was filed to where `after` is."""
        value_of, filed = self._index_keys[index], self._indexes[index]
        old = value_of(before) if before is not None else None
        new = value_of(after) if after is not None else None
        if old is not None and old != new:
            held = filed.get(old)
            if held is not None:
                held.pop(key, None)
                if not held:
                    del filed[old]
        if new is not None and after is not None:
            filed.setdefault(new, {})[key] = after

    def _notify(self, notice: Notice) -> None:
        for handler in self._handlers:
            self._call(handler, notice)

    def _call(self, handler: Handler, notice: Notice) -> None:
        try:
            handler(notice)
        except Exception:
            log.error(
                "informer.handler_failed",
                kind=self.kind.info.plural,
                object=notice.key,
                exc_info=True,
            )


def pod_node(pod: Message) -> str | None:
    """`NODE`'s key: the node a pod is bound to."""
    return pod.spec.node_name or None  # type: ignore[attr-defined]


def _controller_uid(obj: Message) -> str | None:
    ref = owners.controller_of(obj)
    return ref.uid if ref is not None else None
