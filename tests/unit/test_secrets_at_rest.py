"""Secrets at rest: what the store holds is sealed, what every reader sees is the Secret, a key
rotation re-seals everything, and immutable ConfigMaps and Secrets stay as they are."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from controlplane.objects import ChangeType, ObjectStore
from controlplane.objects.encryption import (
    ENVELOPE_PREFIX,
    KEY_FILE,
    DecryptionFailed,
    Encryption,
    Keyring,
    key_id_of,
)
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.manifests.problems import ManifestError
from pilothouse.v1 import objects_pb2

VALUE = b"correct-horse-battery-staple"


def secret(name: str = "db", value: bytes = VALUE) -> objects_pb2.Secret:
    message = objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name=name))
    message.data["password"] = value
    manifests.set_defaults(message)
    return message


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.ensure(tmp_path / "pki")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def objects(store: MemoryStore, keyring: Keyring) -> ObjectStore:
    return ObjectStore(store, encryption=Encryption(keyring))


def test_the_key_file_is_private_and_made_once(tmp_path: Path, keyring: Keyring) -> None:
    path = tmp_path / "pki" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the Secrets key file is readable by others"
    again = Keyring.ensure(tmp_path / "pki")
    assert again.primary == keyring.primary, "a restart made a new key: old Secrets are lost"


async def test_the_store_holds_no_secret_value_but_readers_see_it(
    objects: ObjectStore, store: MemoryStore, keyring: Keyring
) -> None:
    created = await objects.create(secret())
    stored = (await store.get("/pilothouse/secrets/default/db")).value
    assert VALUE not in stored, "the Secret's value is in the store in clear"
    assert stored.startswith(ENVELOPE_PREFIX)
    assert key_id_of(stored) == keyring.primary.id, "the envelope does not name its key"
    got = await objects.get(Kind.SECRET, "default", "db")
    assert got.data["password"] == VALUE and got == created
    listed = await objects.list(Kind.SECRET)
    assert [s.data["password"] for s in listed.items] == [VALUE]


async def test_a_watch_sees_the_opened_secret(objects: ObjectStore) -> None:
    start = (await objects.list(Kind.SECRET)).revision
    await objects.create(secret())
    changes = objects.watch(Kind.SECRET, since=start)
    change = await anext(changes)
    assert change.type is ChangeType.ADDED and change.object.data["password"] == VALUE


async def test_an_envelope_moved_to_another_key_does_not_open(
    objects: ObjectStore, store: MemoryStore
) -> None:
    await objects.create(secret("a"))
    await objects.create(secret("b", b"other"))
    a = await store.get("/pilothouse/secrets/default/a")
    b = await store.get("/pilothouse/secrets/default/b")
    await store.update(b.key, a.value, expected_revision=b.revision)
    with pytest.raises(DecryptionFailed, match="does not open"):
        await objects.get(Kind.SECRET, "default", "b")


async def test_plaintext_written_before_encryption_is_read_and_resealed(
    store: MemoryStore, keyring: Keyring
) -> None:
    await ObjectStore(store).create(secret())
    assert VALUE in (await store.get("/pilothouse/secrets/default/db")).value
    objects = ObjectStore(store, encryption=Encryption(keyring))
    assert (await objects.get(Kind.SECRET, "default", "db")).data["password"] == VALUE
    assert await objects.reencrypt(Kind.SECRET) == 1
    assert VALUE not in (await store.get("/pilothouse/secrets/default/db")).value


async def test_rotation_reseals_every_secret_with_the_new_key(
    objects: ObjectStore, store: MemoryStore, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        await objects.create(secret(name))
    encryption = objects.encryption
    assert encryption is not None
    old = encryption.keyring.primary.id
    new = encryption.rotate()
    assert new.id != old
    saved = json.loads((tmp_path / "pki" / KEY_FILE).read_text())
    assert [k["id"] for k in saved["keys"]] == [new.id, old], "the new key was not saved first"
    assert await objects.reencrypt(Kind.SECRET) == 3
    for name in ("a", "b", "c"):
        stored = (await store.get(f"/pilothouse/secrets/default/{name}")).value
        assert key_id_of(stored) == new.id
        assert (await objects.get(Kind.SECRET, "default", name)).data["password"] == VALUE
    assert await objects.reencrypt(Kind.SECRET) == 0, "a second pass rewrote current Secrets"
    # A control plane started afresh reads them with the saved ring.
    restarted = ObjectStore(store, encryption=Encryption(Keyring.ensure(tmp_path / "pki")))
    assert (await restarted.get(Kind.SECRET, "default", "a")).data["password"] == VALUE


async def test_configmaps_are_not_sealed(objects: ObjectStore, store: MemoryStore) -> None:
    cm = objects_pb2.ConfigMap(metadata=objects_pb2.ObjectMeta(name="cfg"), data={"k": "plain"})
    await objects.create(cm)
    assert b"plain" in (await store.get("/pilothouse/configmaps/default/cfg")).value


async def test_an_immutable_configmap_keeps_its_data(objects: ObjectStore) -> None:
    cm = objects_pb2.ConfigMap(
        metadata=objects_pb2.ObjectMeta(name="cfg"), data={"k": "v1"}, immutable=True
    )
    await objects.apply(cm)
    changed = objects_pb2.ConfigMap()
    changed.CopyFrom(cm)
    changed.data["k"] = "v2"
    with pytest.raises(ManifestError) as caught:
        await objects.apply(changed)
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("data", "Forbidden: field is immutable when `immutable` is set")
    ]
    unset = objects_pb2.ConfigMap()
    unset.CopyFrom(cm)
    unset.ClearField("immutable")
    with pytest.raises(ManifestError, match="immutable"):
        await objects.apply(unset)
    assert (await objects.get(Kind.CONFIGMAP, "default", "cfg")).data["k"] == "v1"
    labelled = objects_pb2.ConfigMap()
    labelled.CopyFrom(cm)
    labelled.metadata.labels["team"] = "a"
    await objects.apply(labelled)  # metadata still changes


async def test_a_secrets_type_cannot_change(objects: ObjectStore) -> None:
    await objects.apply(secret())
    retyped = secret()
    retyped.type = "kubernetes.io/basic-auth"
    with pytest.raises(ManifestError, match=r'type: Invalid value: "kubernetes\.io/basic-auth"'):
        await objects.apply(retyped)


async def test_a_key_made_by_another_control_plane_is_read_from_the_copied_file(
    store: MemoryStore, tmp_path: Path
) -> None:
    Keyring.ensure(tmp_path / "pki")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / KEY_FILE).write_bytes((tmp_path / "pki" / KEY_FILE).read_bytes())
    here = ObjectStore(store, encryption=Encryption(Keyring.ensure(tmp_path / "pki")))
    there = ObjectStore(store, encryption=Encryption(Keyring.ensure(other_dir)))
    assert there.encryption is not None
    there.encryption.rotate()  # another member rotates and re-seals
    await there.create(secret())
    with pytest.raises(DecryptionFailed, match="not in"):
        await here.get(Kind.SECRET, "default", "db")
    (tmp_path / "pki" / KEY_FILE).write_bytes((other_dir / KEY_FILE).read_bytes())
    assert (await here.get(Kind.SECRET, "default", "db")).data["password"] == VALUE
