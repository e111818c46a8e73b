"""Encryption at rest: the values of some kinds (Secrets) are sealed before they reach etcd.

Vocabulary:
- keyring: the AES-256 keys of the cluster, each with an id, one of them primary; kept in
  one file (`KEY_FILE`, mode 0600) in the control plane's pki directory beside the cluster
  CA, made with it on first start (`Keyring.ensure`) and never written anywhere else;
- envelope: what etcd holds for a sealed object:
  `ENVELOPE_PREFIX + <key id> + ":" + <12-byte nonce> + <AES-GCM ciphertext and tag>`
  (Kubernetes' aesgcm provider's layout, under Pilothouse's own prefix); the etcd key of the
  object is the GCM associated data, so an envelope copied to another key does not open;
- rotation (`Keyring.rotate`): a new key becomes primary; older keys stay in the file so
  that anything still sealed with them (an etcd backup) can be read.

Invariants:
- `seal` always uses the primary key and a fresh random nonce; `open` reads any envelope of a
  key in the ring, and a value without the prefix as it is (plaintext written before
  encryption was on; the next write seals it). An envelope of an unknown key, or one that fails
  authentication, raises `DecryptionFailed` naming the key id, never any content.
- The key file is replaced atomically (written beside, fsynced, renamed), never rewritten in
  place, and its keys never appear in logs. Every control plane of a cluster has the same key
  file (it is part of the `pki/` they share); an envelope of a key this one does not hold makes
  it read the file again (a rotation made by another member, its file copied here).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilothouse.kinds import Kind

log = structlog.get_logger(__name__)

KEY_FILE = "secrets-encryption.json"
ENVELOPE_PREFIX = b"pilothouse:enc:aesgcm:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
ENCRYPTED_KINDS = frozenset({Kind.SECRET})


class DecryptionFailed(Exception):
    """A stored value cannot be opened (unknown key id, or tampered/wrong key)."""


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    secret: bytes = field(repr=False)
    created: str = ""


@dataclass(frozen=True, slots=True)
class Keyring:
    """The keys, primary first."""

    path: Path
    keys: tuple[Key, ...]

    @property
    def primary(self) -> Key:
        return self.keys[0]

    def get(self, key_id: str) -> Key | None:
        return next((k for k in self.keys if k.id == key_id), None)

    @classmethod
    def ensure(cls, directory: Path) -> Keyring:
        """The keyring of `directory` (the pki dir), made with one key if there is none."""
        path = Path(directory) / KEY_FILE
        if path.exists():
            return cls.load(path)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ring = cls(path=path, keys=(_new_key(),))
        ring._save()
        log.info("secrets.key_created", key_id=ring.primary.id, file=str(path))
        return ring

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            data = json.loads(Path(path).read_text())
            keys = tuple(
                Key(id=k["id"], secret=base64.b64decode(k["secret"]), created=k.get("created", ""))
                for k in data["keys"]
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DecryptionFailed(
                f"cannot read the Secrets encryption keys in {path}: {exc}"
            ) from None
        if not keys or any(len(k.secret) != KEY_BYTES for k in keys):
            raise DecryptionFailed(f"{path} holds no usable 256-bit key")
        return cls(path=Path(path), keys=keys)

    def rotate(self) -> Keyring:
        """A ring with a new primary key, the old keys kept after it; saved before returned."""
        ring = Keyring(path=self.path, keys=(_new_key(), *self.keys))
        ring._save()
        log.info("secrets.key_rotated", key_id=ring.primary.id, previous=self.primary.id)
        return ring

    def _save(self) -> None:
        data = {
            "note": "Pilothouse Secrets encryption keys (AES-256-GCM), primary first. Keep it "
            "private and identical on every control plane; losing it loses every Secret.",
            "keys": [
                {"id": k.id, "secret": base64.b64encode(k.secret).decode(), "created": k.created}
                for k in self.keys
            ],
        }
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def _new_key() -> Key:
    now = datetime.datetime.now(datetime.UTC)
    key_id = f"{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    return Key(id=key_id, secret=AESGCM.generate_key(bit_length=256), created=now.isoformat())


class Encryption:
    """Seals and opens stored values of `kinds` with a keyring (which `rotate` replaces)."""

    def __init__(self, keyring: Keyring, *, kinds: Iterable[Kind] = ENCRYPTED_KINDS) -> None:
        self._keyring = keyring
        self.kinds = frozenset(kinds)

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def rotate(self) -> Key:
        """Make a new primary key (saved to the key file first); return it."""
        self._keyring = self._keyring.rotate()
        return self._keyring.primary

    def seal(self, storage_key: str, plaintext: bytes) -> bytes:
        key = self._keyring.primary
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key.secret).encrypt(nonce, plaintext, storage_key.encode())
        return ENVELOPE_PREFIX + key.id.encode() + b":" + nonce + sealed

    def open(self, storage_key: str, stored: bytes) -> bytes:
        key_id = key_id_of(stored)
        if key_id is None:
            return stored  # written before encryption: plaintext until its next write
        key = self._keyring.get(key_id)
        if key is None:
            key = self._reload(key_id)
        if key is None:
            raise DecryptionFailed(
                f"{storage_key} is sealed with key {key_id!r}, which is not in "
                f"{self._keyring.path}: restore that key file (it is the same on every "
                "control plane)"
            )
        body = stored[len(ENVELOPE_PREFIX) + len(key_id) + 1 :]
        nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
        try:
            return AESGCM(key.secret).decrypt(nonce, sealed, storage_key.encode())
        except Exception:  # cryptography's InvalidTag: tampered, moved, or another key
            raise DecryptionFailed(
                f"{storage_key} does not open with key {key_id!r} (altered, or moved from "
                "another key)"
            ) from None

    def _reload(self, key_id: str) -> Key | None:
        """The key file again, for a key another control plane made (`secrets rotate-key`
        ran there and its key file was copied here): its keys replace ours if it has it."""
        try:
            ring = Keyring.load(self._keyring.path)
        except DecryptionFailed:
            return None
        key = ring.get(key_id)
        if key is not None:
            self._keyring = ring
            log.info("secrets.keys_reloaded", key_id=key_id)
        return key

    def current(self, stored: bytes) -> bool:
        """Whether `stored` is sealed with the primary key (nothing to re-encrypt)."""
        return key_id_of(stored) == self._keyring.primary.id


def key_id_of(stored: bytes) -> str | None:
    """The key id of an envelope; None for a value that is not one."""
    if not stored.startswith(ENVELOPE_PREFIX):
        return None
    rest = stored[len(ENVELOPE_PREFIX) :]
    key_id, sep, _ = rest.partition(b":")
    return key_id.decode(errors="replace") if sep else None
