"""`get controlplanes` and `describe controlplane`: what a person reads about the members."""

from __future__ import annotations

from datetime import UTC, datetime

from pilothouse.cli import controlplanes, tables
from pilothouse.v1 import controlplane_pb2 as api

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def answer() -> api.ListControlPlanesResponse:
    response = api.ListControlPlanesResponse(served_by="cp-2")
    up = api.EtcdMemberStatus(name="cp-1", healthy=True, client_urls=["https://10.0.0.1:2379"])
    lead = api.EtcdMemberStatus(
        name="cp-2", healthy=True, leader=True, client_urls=["https://10.0.0.2:2379"]
    )
    down = api.EtcdMemberStatus(
        name="cp-3", error="https://10.0.0.3:2379: UNAVAILABLE failed to connect"
    )
    response.etcd.extend([up, lead, down])
    response.members.add(
        name="cp-1", address="10.0.0.1:7070", alive=True, leader=True, term=41,
        etcd_endpoint="https://10.0.0.1:2379", etcd=up,
    )  # fmt: skip
    response.members.add(
        name="cp-2", address="10.0.0.2:7070", alive=True, term=44,
        etcd_endpoint="https://10.0.0.2:2379", etcd=lead,
    )  # fmt: skip
    response.members.add(
        name="cp-3", address="10.0.0.3:7070", etcd_endpoint="https://10.0.0.3:2379", etcd=down
    )
    t = NOW.timestamp()
    response.history.add(time=t - 600, leader="cp-3", term=7, ended=t - 60, reason="LeaseExpired")
    response.history.add(time=t - 59, leader="cp-1", term=41, previous="cp-3", previous_term=7)
    return response


def test_the_table_shows_who_leads_who_is_down_and_how_etcd_answers() -> None:
    given = answer()
    rendered = tables.render(controlplanes.table(given, list(given.members)))
    assert rendered.splitlines() == [
        "NAME   STATUS     ROLE     ADDRESS         ETCD                   TERM",
        "cp-1   Ready      leader   10.0.0.1:7070   healthy                41",
        "cp-2   Ready      -        10.0.0.2:7070   healthy, raft leader   44",
        "cp-3   NotReady   -        10.0.0.3:7070   unreachable            -",
    ]


def test_describe_names_the_leader_the_etcd_error_and_the_leader_changes() -> None:
    given = answer()
    page = controlplanes.page(given.members[2], given, now=NOW)
    assert "Status:         NotReady" in page
    assert "Role:           standby (leader: cp-1)" in page
    assert "unhealthy: https://10.0.0.3:2379: UNAVAILABLE failed to connect" in page
    changes = page.split("Leader changes (newest first):\n")[1].splitlines()
    assert changes[0].split() == ["AGE", "LEADER", "TERM", "PREVIOUS", "ENDED"]
    assert changes[1].split() == ["59s", "cp-1", "41", "cp-3", "leading"]
    assert changes[2].split() == ["10m", "cp-3", "7", "-", "LeaseExpired", "60s", "ago"]


def test_controlplanes_are_asked_for_by_their_names() -> None:
    assert controlplanes.wanted(["controlplanes"]) and controlplanes.wanted(["cp", "cp-1"])
    assert controlplanes.wanted(["controlplane/cp-2"])
    assert not controlplanes.wanted(["pods"])
