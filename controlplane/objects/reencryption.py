"""Rewriting sealed objects with the primary key, after a key rotation.

Invariant: each object is rewritten with a compare-and-swap of the same object, retried on a
conflict from a fresh read, so a concurrent writer's change is never lost; an object deleted
meanwhile is skipped.
"""

from __future__ import annotations

import structlog

from controlplane.objects.encryption import Encryption
from controlplane.objects.keys import key_prefix
from controlplane.store import Conflict, NotFound, Store
from pilothouse.kinds import Kind

log = structlog.get_logger(__name__)


async def reencrypt(store: Store, encryption: Encryption | None, kind: Kind) -> int:
    """Rewrite every object of `kind` not sealed with the primary key (after a key rotation,
    or plaintext stored before encryption); returns how many were rewritten."""
    if encryption is None or kind not in encryption.kinds:
        return 0
    rewritten = 0
    for entry in (await store.list(key_prefix(kind))).entries:
        while not encryption.current(entry.value):
            sealed = encryption.seal(entry.key, encryption.open(entry.key, entry.value))
            try:
                await store.update(entry.key, sealed, expected_revision=entry.revision)
                rewritten += 1
                break
            except Conflict:
                try:
                    entry = await store.get(entry.key)
                except NotFound:
                    break
            except NotFound:
                break
    log.info("objects.reencrypted", kind=kind.info.plural, rewritten=rewritten)
    return rewritten
