"""Bootstrap tokens: the shared secrets with which a new node asks for its first certificate.

Vocabulary:
- token: `<id>.<secret>`, kubeadm's format `[a-z0-9]{6}.[a-z0-9]{16}`. The id is public (it
  names the token in `token list`/`delete` and in logs); the secret never is.
- record: what is stored under `/pilothouse/bootstrap-tokens/<id>`: the sha256 of the secret,
  description, creation and expiry times, whether the token was revoked, its usages, the node
  it is bound to (if any), whether it is single-use and whether it was used.
- usage (`Usage`): what a token may be exchanged for; today only `join` (a node certificate).
  A token without the usage asked for verifies as WRONG_USAGE.
- node binding (`node`): a token made with `token create --for-node NAME` joins only NAME
  (WRONG_NODE for another name), and counts as the admin's approval to join NAME over an
  existing Node (see `controlplane.auth.servicer`).
- single use: `consume` marks the token used (compare-and-swap, so two joins racing with one
  token cannot both succeed); afterwards it verifies as USED.

Invariants:
- The secret is shown once, by `create`, and never stored or logged: only its sha256.
- `verify` compares hashes in constant time and answers with a `Verdict`; it never raises for a
  bad token. A revoked token says REVOKED until its expiry has passed; records are pruned a
  day after they expire, after which the token is simply UNKNOWN.
- Time comes from the injected `now` (epoch seconds), so tests move it by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
    USED = "used"
    WRONG_USAGE = "wrong-usage"
    WRONG_NODE = "wrong-node"


class State(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USED = "used"


class Usage(enum.Enum):
    JOIN = "join"  # exchange the token for a node certificate


DEFAULT_USAGES = (Usage.JOIN,)


def parse_usages(values: list[str] | tuple[str, ...]) -> tuple[Usage, ...]:
    """Usages from their names ("join"); ValueError naming the known ones otherwise."""
    if not values:
        return DEFAULT_USAGES
    known = {usage.value: usage for usage in Usage}
    unknown = [value for value in values if value not in known]
    if unknown:
        raise ValueError(f"unknown token usage {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return tuple(dict.fromkeys(known[value] for value in values))


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
    usages: tuple[Usage, ...] = DEFAULT_USAGES
    node: str = ""  # "": any node name
    single_use: bool = False
    used: bool = False

    def state(self, now: float) -> State:
        if self.revoked:
            return State.REVOKED
        if self.used:
            return State.USED
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
    info: TokenInfo | None = None  # the token's record, when the secret matched

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

    async def create(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        description: str = "",
        usages: tuple[Usage, ...] = DEFAULT_USAGES,
        node: str = "",
        single_use: bool = False,
    ) -> CreatedToken:
        if ttl <= 0:
            raise ValueError(f"a token's time to live must be positive, not {ttl:g} s")
        if not usages:
            raise ValueError("a token needs at least one usage (join)")
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
                usages=tuple(usages),
                node=node,
                single_use=single_use,
            )
            try:
                await self._store.create(PREFIX + token_id, _encode(info, _hash(secret)))
            except AlreadyExists:
                continue  # 36^6 ids: a collision is rare, and a retry picks another
            break
        log.info(
            "token.created",
            token_id=token_id,
            expires=info.expires,
            ttl=ttl,
            usages=",".join(u.value for u in usages),
            node=node or None,
            single_use=single_use,
        )
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
            revoked = dataclasses.replace(info, revoked=True)
            try:
                await self._store.update(
                    key, _encode(revoked, secret_hash), expected_revision=entry.revision
                )
            except Conflict:
                continue
            log.info("token.revoked", token_id=token_id)
            return revoked

    async def verify(
        self, token: str, *, usage: Usage = Usage.JOIN, node: str | None = None
    ) -> Check:
        """Whether `token` may be used for `usage` (and for node `node`, when given)."""
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
        if info.used:
            return Check(
                Verdict.USED,
                token_id,
                f'the join token "{token_id}" was for a single use and has been used; create a '
                "new one with `pilothouse token create`",
            )
        if now >= info.expires:
            ago = now - info.expires
            return Check(
                Verdict.EXPIRED,
                token_id,
                f'the join token "{token_id}" expired {_duration(ago)} ago; create a new one '
                "with `pilothouse token create`",
            )
        if usage not in info.usages:
            usages = ", ".join(u.value for u in info.usages)
            return Check(
                Verdict.WRONG_USAGE,
                token_id,
                f'the token "{token_id}" may be used for {usages}, not {usage.value}',
            )
        if node is not None and info.node and info.node != node:
            return Check(
                Verdict.WRONG_NODE,
                token_id,
                f'the join token "{token_id}" joins only node "{info.node}", not "{node}"; '
                f"create one with `pilothouse token create --for-node {node}`",
            )
        return Check(Verdict.OK, token_id, "ok", info=info)

    async def consume(self, token_id: str) -> bool:
        """Mark a single-use token used; False when it was used (or removed) meanwhile. A
        token that is not single-use is left as it is (True)."""
        key = PREFIX + token_id
        try:
            entry = await self._store.get(key)
        except NotFound:
            return False
        info, secret_hash = _decode(entry.value)
        if not info.single_use:
            return True
        if info.used:
            return False
        used = dataclasses.replace(info, used=True)
        try:
            await self._store.update(
                key, _encode(used, secret_hash), expected_revision=entry.revision
            )
        except (Conflict, NotFound):
            return False
        log.info("token.used", token_id=token_id)
        return True


def _encode(info: TokenInfo, secret_hash: str) -> bytes:
    return json.dumps(
        {
            "id": info.id,
            "secretSha256": secret_hash,
            "description": info.description,
            "created": info.created,
            "expires": info.expires,
            "revoked": info.revoked,
            "usages": [usage.value for usage in info.usages],
            "node": info.node,
            "singleUse": info.single_use,
            "used": info.used,
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
        # Records from before usages existed were join tokens.
        usages=tuple(Usage(u) for u in data.get("usages", [u.value for u in DEFAULT_USAGES])),
        node=str(data.get("node", "")),
        single_use=bool(data.get("singleUse", False)),
        used=bool(data.get("used", False)),
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
