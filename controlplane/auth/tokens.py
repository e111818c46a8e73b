"""Bootstrap tokens: the shared secrets with which a new node asks for its first certificate.

Vocabulary:
- token: `<id>.<secret>`, kubeadm's format `[a-z0-9]{6}.[a-z0-9]{16}`. The id is public (it
  names the token in `token list`/`delete` and in logs); the secret never is.
- record: what is stored under `/pilothouse/bootstrap-tokens/<id>`: the sha256 of the secret,
  description, creation and expiry times, and whether the token was revoked.

Invariants:
- The secret is shown once, by `create`, and never stored or logged: only its sha256.
- `verify` compares hashes in constant time and answers with a `Verdict`; it never raises for a
  bad token. A revoked token says REVOKED until its expiry has passed; records are pruned a
  day after they expire, after which the token is simply UNKNOWN.
- Time comes from the injected `now` (epoch seconds), so tests move it by hand.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controlplane.store import AlreadyExists, Conflict, NotFound, Store

log = structlog.get_logger(__name__)

PREFIX = "/pilothouse/bootstrap-tokens/"
DEFAULT_TTL = 24 * 3600.0
PRUNE_AFTER = 24 * 3600.0
_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_ID = re.compile(r"^[a-z0-9]{6}$")


class Verdict(enum.Enum):
    OK = "ok"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    REVOKED = "revoked"


class State(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


class TokenNotFound(LookupError):
    """`delete` of a token id that does not exist."""


class InvalidTokenId(ValueError):
    """A token id that is not six lower-case letters or digits."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    description: str
    created: float
    expires: float
    revoked: bool

    def state(self, now: float) -> State:
        if self.revoked:
            return State.REVOKED
        return State.EXPIRED if now >= self.expires else State.VALID


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: str
    info: TokenInfo


@dataclass(frozen=True, slots=True)
class Check:
    """The answer of `verify`: the verdict, the token id when one could be read, and a sentence
    for the person who used the token."""

    verdict: Verdict
    token_id: str
    message: str

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class TokenStore:
    """Bootstrap tokens kept under PREFIX in a Store."""

    def __init__(self, store: Store, *, now: Callable[[], float] = time.time) -> None:
        self._store = store
        self._now = now

    def now(self) -> float:
        """The store's clock (epoch seconds)."""
        return self._now()

    async def create(self, *, ttl: float = DEFAULT_TTL, description: str = "") -> CreatedToken:
        if ttl <= 0:
            raise ValueError(f"a token's time to live must be positive, not {ttl:g} s")
        now = self._now()
        secret = _random(16)
        while True:
            token_id = _random(6)
            info = TokenInfo(
                id=token_id,
                description=description,
                created=now,
                expires=now + ttl,
                revoked=False,
            )
            try:
                await self._store.create(PREFIX + token_id, _encode(info, _hash(secret)))
            except AlreadyExists:
                continue  # 36^6 ids: a collision is rare, and a retry picks another
            break
        log.info("token.created", token_id=token_id, expires=info.expires, ttl=ttl)
        return CreatedToken(token=f"{token_id}.{secret}", info=info)

    async def list(self) -> list[TokenInfo]:
        """Every token not yet pruned, oldest first; prunes records long expired."""
        now = self._now()
        listing = await self._store.list(PREFIX)
        infos: list[TokenInfo] = []
        for entry in listing.entries:
            info, _ = _decode(entry.value)
            if now >= info.expires + PRUNE_AFTER:
                with contextlib.suppress(NotFound, Conflict):
                    await self._store.delete(entry.key, expected_revision=entry.revision)
                continue
            infos.append(info)
        return sorted(infos, key=lambda i: (i.created, i.id))

    async def delete(self, token_id: str) -> TokenInfo:
        """Revoke a token: from now on it verifies as REVOKED. Idempotent."""
        if not _ID.match(token_id):
            raise InvalidTokenId(
                f"token id {token_id!r} is not six lower-case letters or digits "
                "(the part before the dot)"
            )
        key = PREFIX + token_id
        while True:
            try:
                entry = await self._store.get(key)
            except NotFound:
                raise TokenNotFound(f'bootstrap token "{token_id}" not found') from None
            info, secret_hash = _decode(entry.value)
            if info.revoked:
                return info
            revoked = TokenInfo(
                id=info.id,
                description=info.description,
                created=info.created,
                expires=info.expires,
                revoked=True,
            )
            try:
                await self._store.update(
                    key, _encode(revoked, secret_hash), expected_revision=entry.revision
                )
            except Conflict:
                continue
            log.info("token.revoked", token_id=token_id)
            return revoked

    async def verify(self, token: str) -> Check:
        parsed = parse(token)
        if parsed is None:
            return Check(
                Verdict.UNKNOWN,
                "",
                "the join token is not of the form <6 characters>.<16 characters> "
                "([a-z0-9]); `pilothouse token create` prints one",
            )
        token_id, secret = parsed
        try:
            entry = await self._store.get(PREFIX + token_id)
        except NotFound:
            return Check(
                Verdict.UNKNOWN,
                token_id,
                f'the join token "{token_id}" is unknown to this control plane; '
                "create one with `pilothouse token create`",
            )
        info, secret_hash = _decode(entry.value)
        if not hmac.compare_digest(_hash(secret), secret_hash):
            # Same words as an unknown id: a wrong secret must not tell the caller the id exists.
            return Check(
                Verdict.UNKNOWN,
                token_id,
                f'the join token "{token_id}" is unknown to this control plane; '
                "create one with `pilothouse token create`",
            )
        now = self._now()
        if info.revoked:
            return Check(
                Verdict.REVOKED,
                token_id,
                f'the join token "{token_id}" was revoked; create a new one with '
                "`pilothouse token create`",
            )
        if now >= info.expires:
            ago = now - info.expires
            return Check(
                Verdict.EXPIRED,
                token_id,
                f'the join token "{token_id}" expired {_duration(ago)} ago; create a new one '
                "with `pilothouse token create`",
            )
        return Check(Verdict.OK, token_id, "ok")


def _encode(info: TokenInfo, secret_hash: str) -> bytes:
    return json.dumps(
        {
            "id": info.id,
            "secretSha256": secret_hash,
            "description": info.description,
            "created": info.created,
            "expires": info.expires,
            "revoked": info.revoked,
        },
        sort_keys=True,
    ).encode()


def _decode(value: bytes) -> tuple[TokenInfo, str]:
    data = json.loads(value)
    info = TokenInfo(
        id=str(data["id"]),
        description=str(data.get("description", "")),
        created=float(data["created"]),
        expires=float(data["expires"]),
        revoked=bool(data.get("revoked", False)),
    )
    return info, str(data["secretSha256"])


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
