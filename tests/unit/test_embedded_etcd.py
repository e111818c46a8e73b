"""EmbeddedEtcd as the control plane uses it (mutual TLS with its own CA): start, survive a crash,
keep its endpoint, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controlplane.store import Unavailable
from controlplane.store import tls as etcd_tls
from controlplane.store.embedded import EmbeddedEtcd, EtcdNotFound
from controlplane.store.etcd import EtcdStore


def store_of(embedded: EmbeddedEtcd) -> EtcdStore:
    """A store dialing `embedded` as the control plane does: its etcd client certificate."""
    assert embedded.tls is not None
    ca, cert, key = embedded.tls.client_pems()
    return EtcdStore([embedded.endpoint], credentials=grpc.ssl_channel_credentials(ca, key, cert))


@pytest.fixture
async def etcd(tmp_path: Path) -> AsyncIterator[EmbeddedEtcd]:
    embedded = EmbeddedEtcd(data_dir=tmp_path / "etcd", tls=etcd_tls.ensure(tmp_path / "pki"))
    try:
        yield embedded
    finally:
        await embedded.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone as far as a user can tell.
    with contextlib.suppress(OSError):
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    return False


async def until_available(store: EtcdStore, key: str) -> bytes:
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(Unavailable):
                return (await store.get(key)).value
            await asyncio.sleep(0.1)


async def test_start_serves_a_store_and_restart_keeps_endpoint_and_data(
    etcd: EmbeddedEtcd, tmp_path: Path
) -> None:
    endpoint = await etcd.start()
    assert endpoint.startswith("https://127.0.0.1:")
    store = store_of(etcd)
    try:
        await store.create("/pilothouse/x", b"kept")
        await etcd.stop()
        with pytest.raises(Unavailable):
            await store.get("/pilothouse/x")
        # A new supervisor over the same data dir (a restarted control plane) finds it again.
        again = EmbeddedEtcd(data_dir=tmp_path / "etcd", tls=etcd_tls.ensure(tmp_path / "pki"))
        try:
            assert await again.start() == endpoint, "etcd came back at a different address"
            assert await until_available(store, "/pilothouse/x") == b"kept"
        finally:
            await again.stop()
    finally:
        await store.close()
    assert (tmp_path / "etcd" / "etcd.log").stat().st_size > 0, "etcd's output was not kept"


async def test_run_restarts_a_crashed_etcd_and_stops_it_when_cancelled(etcd: EmbeddedEtcd) -> None:
    await etcd.start()  # as main.py does: learn the endpoint, then supervise
    runner = asyncio.create_task(etcd.run(), name="etcd")
    first_pid = etcd.pid
    store = store_of(etcd)
    try:
        await store.create("/pilothouse/x", b"before the crash")
        await etcd.kill()
        assert await until_available(store, "/pilothouse/x") == b"before the crash"
        assert etcd.pid not in (None, first_pid), "etcd was not restarted after it died"
        second_pid = etcd.pid
    finally:
        await store.close()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    assert not alive(second_pid), "etcd kept running after the control plane stopped"


async def test_missing_etcd_binary_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EtcdNotFound, match="apt-get install etcd-server"):
        await EmbeddedEtcd(data_dir=tmp_path / "etcd").start()
