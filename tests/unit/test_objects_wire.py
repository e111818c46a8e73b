"""Objects listed as wire bytes (`controlplane.objects.wire`, the API's List without
selectors) parse to exactly what the ObjectStore decodes, resourceVersion included, Secrets
opened; and the List answer made of them carries the list's revision."""

from __future__ import annotations

from pathlib import Path

from controlplane.api.servicer import _listed
from controlplane.objects import ObjectStore, wire
from controlplane.objects.encryption import Encryption, Keyring
from controlplane.store.memory import MemoryStore
from pilothouse import kinds
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories


async def test_listed_bytes_parse_to_the_decoded_objects(tmp_path: Path) -> None:
    objects = ObjectStore(MemoryStore(), encryption=Encryption(Keyring.ensure(tmp_path)))
    for i in range(3):
        pod = await objects.create(factories.pod(name=f"p{i}", node="n1"))
    pod.status.phase = "Running"
    await objects.update_status(pod)  # a later revision than its creation
    secret = objects_pb2.Secret(api_version="v1", kind="Secret")
    secret.metadata.name = "db"
    secret.data["password"] = b"hunter2"
    await objects.create(secret)
    for kind in (Kind.POD, Kind.SECRET):
        items, revision = await wire.listed(objects, kind, "default")
        decoded = await objects.list(kind, "default")
        parsed = []
        for item in items:
            obj = kind.info.message()
            obj.ParseFromString(item)
            parsed.append(obj)
        assert parsed == decoded.items and revision == decoded.revision
    answer = await _listed(objects, Kind.POD, None)
    assert [kinds.unwrap(o) for o in answer.items] == (await objects.list(Kind.POD)).items
    assert answer.resource_version == str(revision)
    (listed_secret,) = (await _listed(objects, Kind.SECRET, None)).items
    assert listed_secret.secret.data["password"] == b"hunter2"
