"""ObjectStore: typed CRUD, apply and watch of objects over the byte-level `Store`.

The package docstring (`controlplane.objects`) has the vocabulary and the invariants every
method here keeps: resourceVersion is the entry's revision, every write is a compare-and-swap,
the store sets identity fields, `update` never writes status and `update_status` only status,
and a write that would change nothing is skipped. Value types and the stored encoding:
`controlplane.objects.stored`. Reads are fresh (every write finished before is seen), except
the read before a compare-and-swap: it may take the store's cached copy, because the write
checks it; a decision made without a write (unchanged, refused) is only made on a fresh read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import structlog
from google.protobuf.message import Message

from controlplane.objects import immutable, reencryption, stored
from controlplane.objects.apply import Applied, ApplyOutcome, applied, spec_equal
from controlplane.objects.encryption import Encryption
from controlplane.objects.keys import (
    conflict_message,
    describe,
    key_prefix,
    namespace_for,
    object_key,
)
from controlplane.objects.stored import ChangeType, Invalid, LabelMatcher, ObjectChange, ObjectList
from controlplane.store import AlreadyExists, Change, Conflict, Entry, EventType, NotFound, Store
from pilothouse.kinds import Kind
from pilothouse.manifests.problems import ManifestError, Problem

log = structlog.get_logger(__name__)

_APPLY_RETRIES = 5
_DEFAULT_GRACE_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds


class _Stale(Exception):
    """An answer read from a copy that may be stale: read fresh and decide again."""


class ObjectStore:
    """Typed CRUD, apply and watch of objects over a `Store`."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        graceful_pods: bool = False,
        encryption: Encryption | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        # Seals the values of its kinds (Secrets) on every write and opens them on every read.
        self._encryption = encryption
        # Pod deletion as Kubernetes' API server does it (see `delete`); off, a deleted pod
        # is gone at once (for stores no node agent ever reports to, as in unit tests).
        self.graceful_pods = graceful_pods

    @property
    def encryption(self) -> Encryption | None:
        return self._encryption

    @property
    def store(self) -> Store:
        return self._store

    # ------------------------------------------------------------------ reads

    async def get(self, kind: Kind, namespace: str, name: str, *, fresh: bool = True) -> Message:
        """The object; `fresh=False` lets the store answer from a cached copy that may lag
        the latest writes (for a reader that checks it again before refusing, or writes it
        with compare-and-swap)."""
        namespace = namespace_for(kind, namespace)
        try:
            entry = await self._store.get(object_key(kind, namespace, name), fresh=fresh)
        except NotFound:
            raise NotFound(f"{describe(kind, namespace, name)} not found") from None
        return self._decode(kind, entry)

    async def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        selector: LabelMatcher | None = None,
    ) -> ObjectList:
        listing = await self._store.list(key_prefix(kind, namespace))
        items = []
        for entry in listing.entries:
            obj = self._decode(kind, entry)
            if selector is None or selector.matches(obj.metadata.labels):
                items.append(obj)
        return ObjectList(items=items, revision=listing.revision)

    async def watch(
        self, kind: Kind, namespace: str | None = None, *, since: int
    ) -> AsyncIterator[ObjectChange]:
        """Every change of `kind` objects (in `namespace`) after revision `since`, in order.

        Raises `Compacted` when `since` is too old (list again) and `Unavailable` when the
        store is lost (watch again from the last revision seen).
        """
        async for change in self._store.watch(key_prefix(kind, namespace), since=since):
            obj = self._decode(kind, change)
            if change.type is EventType.DELETE:
                change_type = ChangeType.DELETED
            elif change.created:
                change_type = ChangeType.ADDED
            else:
                change_type = ChangeType.MODIFIED
            yield ObjectChange(type=change_type, object=obj, revision=change.revision)

    # ----------------------------------------------------------------- writes

    async def create(self, message: Message) -> Message:
        """Store a new object. Sets uid, creationTimestamp, generation 1, apiVersion, kind."""
        kind, obj = stored.prepare_new(message, now=self._clock())
        meta = obj.metadata
        key = object_key(kind, meta.namespace, meta.name)
        try:
            entry = await self._store.create(key, self._encode(kind, key, obj))
        except AlreadyExists:
            raise AlreadyExists(
                f"{describe(kind, meta.namespace, meta.name)} already exists"
            ) from None
        meta.resource_version = str(entry.revision)
        log.debug("object.created", kind=kind.info.kind, namespace=meta.namespace, name=meta.name)
        return obj

    async def update(self, message: Message) -> Message:
        """Write spec and metadata (labels, annotations, ownerReferences …), never status.

        CAS on `metadata.resourceVersion` (empty: the current one). Bumps generation when the
        spec changed. Returns the stored object (unchanged, with no write, if nothing changed).
        """

        def change(current: Message) -> Message:
            updated = type(current)()
            updated.CopyFrom(message)
            stored.keep_identity(updated, current, kind)
            if stored.has_status(updated):
                updated.ClearField("status")
                if current.HasField("status"):
                    updated.status.CopyFrom(current.status)
            spec_changed = not spec_equal(updated, current)
            updated.metadata.generation = current.metadata.generation + spec_changed
            return updated

        kind = stored.kind_of(message)
        return await self._rewrite(kind, message, change)

    async def update_status(self, message: Message) -> Message:
        """Write only `status` (CAS as `update`); spec and metadata stay as stored."""

        def change(current: Message) -> Message:
            updated = type(current)()
            updated.CopyFrom(current)
            if not stored.has_status(updated):
                raise Invalid(f"a {kind.info.kind} has no status")
            updated.ClearField("status")
            if message.HasField("status"):
                updated.status.CopyFrom(message.status)
            return updated

        kind = stored.kind_of(message)
        return await self._rewrite(kind, message, change)

    async def _rewrite(
        self, kind: Kind, message: Message, change: Callable[[Message], Message]
    ) -> Message:
        """Write `change(current)` with a compare-and-swap. `current` is first read as the
        store last saw it (a watch cache's copy: no etcd read); only when that copy may have
        been stale (the write lost, or there was nothing to write) is it read fresh and the
        write made once more."""
        for fresh in (False, True):
            current, entry = await self._current(kind, message, fresh=fresh)
            updated = change(current)
            if updated == current and not fresh:
                continue
            try:
                return await self._write(kind, current, updated, entry)
            except Conflict:
                if fresh:
                    raise
        raise AssertionError("unreachable")

    async def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        *,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> Message:
        """Delete and return the object's last state. `resource_version`: only if unchanged.

        Graceful pod deletion (with `graceful_pods`), as Kubernetes does it: a pod bound to a
        node that has not finished is not removed but marked, `deletionTimestamp` = now +
        its grace period (`grace_period_seconds`, else its terminationGracePeriodSeconds),
        and returned so; its node's agent stops it and the node sync removes it once the
        agent reports it gone. Deleting a pod already marked changes nothing; a grace period
        of 0 removes it at once (`--force`).

        A pod with finalizers (the Job controller's `batch.kubernetes.io/job-tracking`) is
        never removed here: where it would go at once it is marked with a grace period of 0
        instead, and goes when its last finalizer is released (`deletion.release`).
        """
        namespace = namespace_for(kind, namespace)
        if kind is Kind.POD:
            marked = await self._mark_deleting(
                namespace, name, resource_version=resource_version, grace=grace_period_seconds
            )
            if marked is not None:
                return marked
        expected = (
            stored.revision(resource_version, kind, namespace, name) if resource_version else None
        )
        key = object_key(kind, namespace, name)
        try:
            entry = await self._store.delete(key, expected_revision=expected)
        except NotFound:
            raise NotFound(f"{describe(kind, namespace, name)} not found") from None
        except Conflict:
            raise Conflict(conflict_message(kind, namespace, name)) from None
        log.debug("object.deleted", kind=kind.info.kind, namespace=namespace, name=name)
        return self._decode(kind, entry)

    async def _mark_deleting(
        self, namespace: str, name: str, *, resource_version: str | None, grace: int | None
    ) -> Message | None:
        """Mark a pod as being deleted; None when it is to be removed at once instead."""
        for attempt in range(_APPLY_RETRIES):
            probe = Kind.POD.info.message()
            probe.metadata.namespace, probe.metadata.name = namespace, name
            probe.metadata.resource_version = resource_version or ""
            current, entry = await self._current(Kind.POD, probe, fresh=attempt > 0)
            meta = current.metadata
            graceful = (
                self.graceful_pods
                and grace != 0
                and bool(current.spec.node_name)
                and current.status.phase not in ("Succeeded", "Failed")
            )
            wait = grace
            if not graceful:
                if not meta.finalizers:
                    return None
                wait = 0  # held by its finalizers: it goes when they are released
            if meta.HasField("deletion_timestamp") and (
                graceful or meta.deletion_grace_period_seconds == 0
            ):
                return current
            if wait is None:
                spec = current.spec
                wait = (
                    spec.termination_grace_period_seconds
                    if spec.HasField("termination_grace_period_seconds")
                    else _DEFAULT_GRACE_SECONDS
                )
            marked = type(current)()
            marked.CopyFrom(current)
            if not meta.HasField("deletion_timestamp"):
                marked.metadata.deletion_timestamp.FromSeconds(int(self._clock()) + max(wait, 0))
            marked.metadata.deletion_grace_period_seconds = max(wait, 0)
            try:
                written = await self._write(Kind.POD, current, marked, entry)
            except Conflict:
                if resource_version or attempt == _APPLY_RETRIES - 1:
                    raise
                continue
            log.debug("object.deleting", kind="Pod", namespace=namespace, name=name, grace=wait)
            return written
        raise AssertionError("unreachable")

    async def apply(self, message: Message, *, dry_run: bool = False) -> Applied:
        """Create the object if absent; otherwise set its spec, labels and annotations.

        What it keeps is `apply.applied`'s rule (status, ownerReferences, controller-owned
        annotations, everything the store sets). An apply that would
        change nothing writes nothing (UNCHANGED, resourceVersion as it was). When the applied
        object carries a resourceVersion it must still be current (`Conflict`); without one,
        a race with another writer (a controller writing status) is retried here.
        """
        kind = stored.kind_of(message)
        pinned = bool(message.metadata.resource_version)
        for attempt in range(_APPLY_RETRIES):
            try:
                # The first try reads the store's last seen copy; an answer that wrote nothing
                # (unchanged, a refusal) is only given from a fresh read.
                fresh = attempt > 0 or dry_run
                return await self._apply_once(kind, message, dry_run=dry_run, fresh=fresh)
            except _Stale:
                continue
            except (Conflict, AlreadyExists, NotFound):
                # The object appeared, changed or vanished between our read and our write.
                if pinned or attempt == _APPLY_RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    # -------------------------------------------------------------- internals

    async def _apply_once(
        self, kind: Kind, message: Message, *, dry_run: bool, fresh: bool
    ) -> Applied:
        namespace = namespace_for(kind, message.metadata.namespace)
        name = message.metadata.name
        key = object_key(kind, namespace, name)
        try:
            current = self._decode(kind, await self._store.get(key, fresh=fresh))
        except NotFound:
            if message.metadata.resource_version:
                if not fresh:
                    raise _Stale from None
                raise NotFound(f"{describe(kind, namespace, name)} not found") from None
            if dry_run:
                _, obj = stored.prepare_new(message, now=self._clock())
                return Applied(object=obj, outcome=ApplyOutcome.CREATED)
            return Applied(object=await self.create(message), outcome=ApplyOutcome.CREATED)
        if message.metadata.resource_version and (
            message.metadata.resource_version != current.metadata.resource_version
        ):
            if not fresh:
                raise _Stale
            raise Conflict(conflict_message(kind, namespace, name))
        desired = applied(current, message)
        if desired == current:
            if not fresh:
                raise _Stale
            return Applied(object=current, outcome=ApplyOutcome.UNCHANGED)
        if dry_run:
            if not spec_equal(desired, current):
                desired.metadata.generation = current.metadata.generation + 1
            return Applied(object=desired, outcome=ApplyOutcome.CONFIGURED)
        return Applied(object=await self.update(desired), outcome=ApplyOutcome.CONFIGURED)

    async def _current(
        self, kind: Kind, message: Message, *, fresh: bool = True
    ) -> tuple[Message, Entry]:
        """The stored object `message` refers to, checked against its resourceVersion; not
        `fresh`, the store's last seen copy, read again fresh before it is refused."""
        meta = message.metadata
        namespace = namespace_for(kind, meta.namespace)
        key = object_key(kind, namespace, meta.name)
        try:
            entry = await self._store.get(key, fresh=fresh)
        except NotFound:
            if not fresh:
                return await self._current(kind, message)
            raise NotFound(f"{describe(kind, namespace, meta.name)} not found") from None
        if meta.resource_version and (
            stored.revision(meta.resource_version, kind, namespace, meta.name) != entry.revision
        ):
            if not fresh:
                return await self._current(kind, message)
            raise Conflict(conflict_message(kind, namespace, meta.name))
        return self._decode(kind, entry), entry

    async def _write(self, kind: Kind, current: Message, updated: Message, entry: Entry) -> Message:
        if updated == current:
            return current
        meta = updated.metadata
        found = immutable.problems(current, updated)
        if found:
            raise ManifestError([Problem("", 0, field, text) for field, text in found])
        try:
            new_entry = await self._store.update(
                entry.key, self._encode(kind, entry.key, updated), expected_revision=entry.revision
            )
        except NotFound:
            raise NotFound(f"{describe(kind, meta.namespace, meta.name)} not found") from None
        except Conflict:
            raise Conflict(conflict_message(kind, meta.namespace, meta.name)) from None
        meta.resource_version = str(new_entry.revision)
        return updated

    def _encode(self, kind: Kind, key: str, message: Message) -> bytes:
        value = stored.encode(message)
        if self._encryption is not None and kind in self._encryption.kinds:
            return self._encryption.seal(key, value)
        return value

    def _decode(self, kind: Kind, entry: Entry | Change) -> Message:
        value = entry.value
        if self._encryption is not None and kind in self._encryption.kinds:
            value = self._encryption.open(entry.key, value)
        return stored.decode(kind, value, entry.revision)

    async def reencrypt(self, kind: Kind) -> int:
        """Rewrite every object of `kind` not sealed with the primary key (`reencryption`)."""
        return await reencryption.reencrypt(self._store, self._encryption, kind)
