"""What the control plane stands on: its etcd (embedded and supervised, or external with
--etcd), how the store dials it, and the cluster PKI and API security made before the API binds.

Invariants:
- with --etcd nothing is started here; the embedded etcd speaks mutual TLS with its own CA
  unless `--insecure` (then plaintext, loopback only);
- the PKI files are made or refreshed before anything serves, and `--init-pki` makes exactly
  what every member of one control plane must share;
- with security, agents are dialled with the control plane's client certificate and never a
  node that is cut off (revoked or deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
import structlog

from controlplane import config as settings
from controlplane.auth import bootstrap
from controlplane.auth.admission import NodeAccessRules, node_lookup
from controlplane.auth.approvals import Approvals
from controlplane.auth.revocations import Revocations
from controlplane.auth.serving import Security, join_listen_for
from controlplane.auth.tokens import TokenStore
from controlplane.leader.settings import HaSettings
from controlplane.nodes.agent import Connect, connector
from controlplane.objects import ObjectStore
from controlplane.objects.encryption import Keyring
from controlplane.store import StoreError
from controlplane.store import tls as etcd_tls
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.etcd import EtcdStore

log = structlog.get_logger(__name__)


def raft_placement(
    store: EtcdStore, embedded: EmbeddedEtcd | None, ha: HaSettings
) -> Callable[[], Awaitable[str | None]] | None:
    """While leading, keep etcd's raft leader off this member's etcd (controlplane.leader.
    placement); only for an embedded etcd that is one member of several."""
    if embedded is None or ha.cluster() is None:
        return None

    async def move() -> str | None:
        return await store.move_raft_leader(away_from=embedded.endpoint)

    return move


def members_of(store: EtcdStore) -> Callable[[], Awaitable[None]]:
    """Learn the other etcd members' client URLs (MemberList), so the store can fail over
    to them when the one it uses dies; again every 10 s (members start at different times)."""

    async def discover() -> None:
        while True:
            with contextlib.suppress(StoreError):
                await store.cluster_members()
            await asyncio.sleep(10.0)

    return discover


def embedded_etcd(config: settings.Config, ha: HaSettings) -> EmbeddedEtcd | None:
    """The etcd this process runs (None with --etcd): mutual TLS with its own CA, or
    plaintext on loopback with --insecure."""
    if config.etcd_endpoints:
        if not config.etcd_tls:
            log.warning(
                "controlplane.etcd_plaintext",
                etcd=",".join(config.etcd_endpoints),
                note="whoever reaches this etcd can read and change the whole cluster",
            )
        return None
    cluster = ha.cluster()
    hosts = (*etcd_tls.DEFAULT_HOSTS, cluster.host) if cluster else etcd_tls.DEFAULT_HOSTS
    tls = None if config.insecure else etcd_tls.ensure(config.etcd_pki_dir, hosts=hosts)
    return EmbeddedEtcd(
        data_dir=config.etcd_dir, tls=tls, cluster=cluster, client_port=ha.client_port
    )


def etcd_credentials(
    config: settings.Config, embedded: EmbeddedEtcd | None
) -> grpc.ChannelCredentials | None:
    """How the store dials etcd: the embedded etcd's client certificate, the --etcd-* files,
    or nothing (plaintext)."""
    if embedded is not None:
        if embedded.tls is None:
            return None
        ca, cert, key = embedded.tls.client_pems()
        return grpc.ssl_channel_credentials(ca, key, cert)
    files = config.etcd_tls
    if files is None:
        return None
    try:
        return grpc.ssl_channel_credentials(
            files.ca_file.read_bytes(),
            files.key_file.read_bytes() if files.key_file else None,
            files.cert_file.read_bytes() if files.cert_file else None,
        )
    except OSError as error:
        raise settings.ConfigError(f"cannot read the etcd TLS files: {error}") from None


def init_pki(config: settings.Config, ha: HaSettings) -> None:
    """`--init-pki`: what every member of one control plane shares (see leader.settings)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap.ensure(config.pki_dir, hosts=bootstrap.serving_hosts(config.listen, config.tls_sans))
    cluster = ha.cluster()
    hosts = (*etcd_tls.DEFAULT_HOSTS, cluster.host) if cluster else etcd_tls.DEFAULT_HOSTS
    etcd_tls.ensure(config.etcd_pki_dir, hosts=hosts)
    Keyring.ensure(config.pki_dir)


def security(config: settings.Config, store: EtcdStore) -> tuple[Security | None, Connect]:
    """The API's security and how to dial agents: mTLS with the cluster PKI, or nothing at
    all with --insecure."""
    if config.insecure:
        log.warning("controlplane.insecure", note="plaintext, no authentication: dev only")
        return None, connector()
    cluster_pki = bootstrap.ensure(
        config.pki_dir, hosts=bootstrap.serving_hosts(config.listen, config.tls_sans)
    )
    revocations = Revocations(store)
    security = Security(
        pki=cluster_pki,
        tokens=TokenStore(store),
        join_listen=config.join_listen or join_listen_for(config.listen),
        access=NodeAccessRules(
            revocations=revocations,
            approvals=Approvals(store),
            lookup=node_lookup(ObjectStore(store)),
            grace=config.node_rejoin_grace,
        ),
    )
    # No pod, Secret or log request goes to a node that is cut off (revoked or deleted).
    return security, connector(tls=cluster_pki.agent_client(), refuse=revocations.cut_off)
