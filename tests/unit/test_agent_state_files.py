"""Every file the agent loads at start survives damage (issue 12): an unreadable image record,
CNI attachment, remembered pod CIDR, instance id or node credential is quarantined (kept
aside as `<name>.corrupt-<time>`) and read as missing, instead of crashing start-up."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from nodeagent.images.layers import LayerStore
from nodeagent.images.records import ImageRecords
from nodeagent.join import NodeCredentials
from nodeagent.network.cni import CniNetwork
from nodeagent.network.sandbox import remembered_pod_cidr
from nodeagent.registration import load_instance_id
from nodeagent.state.quarantine import quarantined

GARBAGE = b'{"half": \xff\xfe'


def test_damaged_image_tags_and_record_read_as_missing(tmp_path: Path) -> None:
    records = ImageRecords(tmp_path, layers=LayerStore(tmp_path))
    (tmp_path / "tags.json").write_bytes(GARBAGE)
    assert records.tags() == {}
    assert quarantined(tmp_path / "tags.json")
    digest = "sha256:" + "a" * 64
    records.meta_path(digest).write_bytes(GARBAGE)
    assert records.record(digest) is None, "a damaged image record must read as missing"
    assert quarantined(records.meta_path(digest))


async def test_damaged_cni_attachment_reads_as_detached(tmp_path: Path) -> None:
    network = CniNetwork(tmp_path / "plugins", None, tmp_path / "pods")
    (tmp_path / "pods").mkdir()
    record = tmp_path / "pods" / "default_web_uid-1.json"
    record.write_bytes(GARBAGE)
    await network.teardown("default_web_uid-1")  # must not raise
    assert quarantined(record)


@pytest.mark.parametrize("content", [GARBAGE, b"not a network\n"])
def test_damaged_pod_cidr_is_asked_for_again(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "pod-cidr").write_bytes(content)
    assert remembered_pod_cidr(tmp_path) == ""
    assert quarantined(tmp_path / "pod-cidr")


def test_damaged_instance_id_is_made_anew(tmp_path: Path) -> None:
    (tmp_path / "agent.instance").write_bytes(GARBAGE)
    made = load_instance_id(tmp_path)
    assert str(uuid.UUID(made)) == made
    assert load_instance_id(tmp_path) == made, "the new id was not kept"
    assert quarantined(tmp_path / "agent.instance")


def test_damaged_node_credentials_read_as_missing(tmp_path: Path) -> None:
    for name in ("ca.crt", "node.crt", "node.key"):
        (tmp_path / name).write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
    assert NodeCredentials.load(tmp_path) is None
    assert quarantined(tmp_path / "node.crt")
