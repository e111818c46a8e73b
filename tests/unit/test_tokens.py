"""Bootstrap tokens: format, hashed storage, expiry on an injected clock, revocation, pruning."""

from __future__ import annotations

import re

import pytest

from controlplane.auth import tokens
from controlplane.store.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def token_store(store: MemoryStore, clock: Clock) -> tokens.TokenStore:
    return tokens.TokenStore(store, now=clock)


async def test_created_token_has_kubeadm_format_and_verifies(
    token_store: tokens.TokenStore, store: MemoryStore
) -> None:
    created = await token_store.create(ttl=3600, description="rack 3")
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", created.token)
    token_id, secret = created.token.split(".")
    assert created.info.id == token_id
    check = await token_store.verify(created.token)
    assert check.ok and check.verdict is tokens.Verdict.OK
    stored = (await store.get(tokens.PREFIX + token_id)).value
    assert secret.encode() not in stored, "the token secret is stored in clear in etcd"
    [listed] = await token_store.list()
    assert listed.description == "rack 3"
    assert listed.state(0) is tokens.State.VALID


async def test_tokens_expire(token_store: tokens.TokenStore, clock: Clock) -> None:
    created = await token_store.create(ttl=60)
    clock.now += 59
    assert (await token_store.verify(created.token)).ok
    clock.now += 61
    check = await token_store.verify(created.token)
    assert check.verdict is tokens.Verdict.EXPIRED
    assert "expired 60s ago" in check.message
    [listed] = await token_store.list()
    assert listed.state(clock.now) is tokens.State.EXPIRED


async def test_wrong_secret_and_unknown_ids_look_the_same(
    token_store: tokens.TokenStore,
) -> None:
    created = await token_store.create()
    token_id = created.info.id
    wrong = await token_store.verify(f"{token_id}.{'0' * 16}")
    unknown = await token_store.verify("zzzzzz.0123456789abcdef")
    assert wrong.verdict is unknown.verdict is tokens.Verdict.UNKNOWN
    assert wrong.message.replace(token_id, "zzzzzz") == unknown.message
    malformed = await token_store.verify("not-a-token")
    assert malformed.verdict is tokens.Verdict.UNKNOWN
    assert "<6 characters>.<16 characters>" in malformed.message


async def test_deleted_token_is_revoked(token_store: tokens.TokenStore) -> None:
    created = await token_store.create()
    other = await token_store.create()
    revoked = await token_store.delete(created.info.id)
    assert revoked.revoked
    check = await token_store.verify(created.token)
    assert check.verdict is tokens.Verdict.REVOKED
    assert "was revoked" in check.message
    assert (await token_store.verify(other.token)).ok, "revoking one token revoked another"
    assert (await token_store.delete(created.info.id)).revoked  # idempotent
    with pytest.raises(tokens.TokenNotFound, match='"abcdef" not found'):
        await token_store.delete("abcdef")
    with pytest.raises(tokens.InvalidTokenId):
        await token_store.delete("ABC")


async def test_long_expired_tokens_are_pruned(token_store: tokens.TokenStore, clock: Clock) -> None:
    old = await token_store.create(ttl=10)
    clock.now += 5
    fresh = await token_store.create(ttl=10 * 24 * 3600)
    clock.now += tokens.PRUNE_AFTER + 10
    assert [t.id for t in await token_store.list()] == [fresh.info.id]
    assert (await token_store.verify(old.token)).verdict is tokens.Verdict.UNKNOWN


async def test_ttl_must_be_positive(token_store: tokens.TokenStore) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        await token_store.create(ttl=0)
