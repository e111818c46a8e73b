"""`pilothouse controlplane`: wires store → ObjectStore → API, informers, controllers, scheduler
and node sync, and runs them until stopped.

The wiring is explicit and happens only here and in the two modules named in 4 (no
registration at import time). Order matters:
1. etcd first (embedded: started and then supervised), because everything reads from it;
2. the API binds its address before the runnables start, so a taken port fails fast;
3. security (unless `--insecure`): the PKI files are made or refreshed before the API binds,
   and `admin.conf` is written once the API's address is known, before `controlplane.addr`;
   node sync and the logs proxy call agents with the control plane's client certificate;
   `controlplane.addr` is written only once the API serves, and removed on the way out;
4. the parts themselves, in start order, and which of them only the leader runs:
   `controlplane.assembly`; etcd, its credentials and the PKI: `controlplane.foundation`.

SIGTERM and SIGINT stop everything cleanly, the embedded etcd child last. A part that stops
on its own makes the process exit non-zero (see `pilothouse.process.runnable`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import structlog

from controlplane import assembly, foundation
from controlplane import config as settings
from controlplane.api.controlplanes import ControlPlanesServicer
from controlplane.api.hostports import port_of
from controlplane.api.server import ApiServer
from controlplane.auth import bootstrap
from controlplane.auth.serving import Security
from controlplane.dashboard import settings as operate_flags
from controlplane.dashboard.settings import OperateSettings
from controlplane.digests import DigestResolver, NoDigests, RegistryDigestResolver
from controlplane.leader import Candidate, Election
from controlplane.leader import members as leader_members
from controlplane.leader import settings as ha_flags
from controlplane.leader.keeper import LeaseKeeper
from controlplane.leader.settings import HaSettings
from controlplane.nodes import settings as node_flags
from controlplane.nodes.leases import NodeLeases
from controlplane.nodes.registry import NodeRegistry
from controlplane.nodes.settings import NodeSettings
from controlplane.objects import ObjectStore
from controlplane.objects.encryption import Encryption, Keyring
from controlplane.services import settings as service_flags
from controlplane.services.addresses import ServiceAddresses
from controlplane.services.settings import ServiceSettings
from controlplane.store import StoreError
from controlplane.store.defrag import Defragmenter
from controlplane.store.embedded import EtcdNotFound, EtcdStartFailed
from controlplane.store.etcd import EtcdStore
from controlplane.store.watchcache import WatchCache
from pilothouse import logs
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.process import addressfile, signals
from pilothouse.process.grpcserver import BindError
from pilothouse.process.runnable import RunnableExited, Task, run_all

log = structlog.get_logger(__name__)


async def serve(
    config: settings.Config,
    nodes: NodeSettings | None = None,
    ha: HaSettings | None = None,
    services: ServiceSettings | None = None,
    operate: OperateSettings | None = None,
) -> int:
    """Run the control plane until cancelled (0) or until a part fails (1)."""
    nodes = nodes or NodeSettings()
    services = services or ServiceSettings()
    ha = ha or HaSettings()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = foundation.embedded_etcd(config, ha)
    store: EtcdStore | None = None
    api: ApiServer | None = None
    keeper: LeaseKeeper | None = None
    try:
        endpoints = [await embedded.start()] if embedded else list(config.etcd_endpoints)
        credentials = foundation.etcd_credentials(config, embedded)
        store = EtcdStore(endpoints, credentials=credentials)
        # Objects are read and watched from memory: one etcd watch feeds every reader.
        cache = WatchCache(store)
        # Secrets are sealed with the keys of the pki dir (made on first start, see
        # controlplane.objects.encryption) before anything can write one.
        # Pods are deleted gracefully: marked, stopped by their agent (after their endpoints
        # left every node's load balancing), then removed (see controlplane.nodes).
        objects = ObjectStore(
            cache, encryption=Encryption(Keyring.ensure(config.pki_dir)), graceful_pods=True
        )
        # Heartbeats reach any member; every member publishes and sees them all.
        leases = NodeLeases(store, member=ha.member)
        registry = NodeRegistry(
            objects,
            grace_period=nodes.grace_period,
            heartbeat_interval=nodes.heartbeat_interval,
            pod_cidrs=nodes.pod_cidrs(),
            leases=leases,
        )
        security, connect = foundation.security(config, store)
        api = ApiServer(
            objects=objects,
            listen=config.listen,
            registry=registry,
            connect=connect,
            security=security,
            policy=config.policy,
            controlplanes=ControlPlanesServicer(
                store, served_by=ha.member, etcd_status=store.cluster_members
            ),
            services=ServiceAddresses(objects, services),
        )
        address = await api.start()
        # etcd's ports are the cluster's own: no pod may take them as a hostPort.
        api.reserved_ports.add(*(port_of(url) for url in endpoints))
        if embedded is not None:
            api.reserved_ports.add(*embedded.ports)
        if security is not None:
            bootstrap.ensure_admin_config(
                security.pki, path=config.admin_config, server=_local(address)
            )
            addressfile.write(config.join_address_file, api.join_address or "")
        addressfile.write(config.address_file, address)
        log.info(
            "controlplane.serving",
            address=address,
            join_address=api.join_address or "",
            secure=security is not None,
            etcd=",".join(endpoints),
            embedded_etcd=embedded is not None,
            data_dir=str(config.data_dir),
        )
        _announce(config, address, security, join_address=api.join_address)
        resolver: DigestResolver = (
            RegistryDigestResolver(RegistriesConfig.load(config.registries))
            if config.registries
            else NoDigests()
        )
        # The leader lease is renewed on a thread of its own, over a connection of its own.
        keeper = LeaseKeeper(lambda: EtcdStore(endpoints, credentials=credentials))
        candidate = Candidate(
            name=ha.member, address=address, etcd=embedded.endpoint if embedded else ""
        )
        try:
            await leader_members.announce(store, candidate)
        except StoreError as error:
            log.warning("controlplane.announce_failed", error=str(error))
        parts = assembly.runnables(
            api=api,
            objects=objects,
            embedded=embedded,
            election=Election(cache, candidate=candidate, ttl=ha.lease_ttl, keeper=keeper),
            raft_placement=foundation.raft_placement(store, embedded, ha),
            # An external etcd is its operator's to maintain; the embedded one is ours.
            defragmenter=Defragmenter(store) if embedded else None,
            nodes=nodes,
            resolver=resolver,
            connect=connect,
            services=services,
            operate=operate,
        )
        parts.insert(1 if embedded else 0, Task("etcd.members", foundation.members_of(store)))
        parts.insert(1 if embedded else 0, cache)
        parts[-1:-1] = assembly.operating_parts(api, operate or OperateSettings(), config, security)
        parts.insert(-1, leases)  # before the leadership, so it stops after the leader's parts
        await run_all(parts)
    except RunnableExited as error:
        log.error("controlplane.failed", error=str(error))
        return 1
    except asyncio.CancelledError:
        log.info("controlplane.stopping")
        return 0
    finally:
        # Stop taking calls first, then drop etcd: the reverse of the start order.
        addressfile.remove(config.address_file, config.join_address_file)
        if api is not None:
            await api.stop()
        if keeper is not None:
            await keeper.stop()
        if store is not None:
            await store.close()
        if embedded is not None:
            await embedded.stop()
        log.info("controlplane.stopped")
    return 0


def _local(address: str) -> str:
    """The address a local CLI dials: a wildcard listen host becomes loopback."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]"
    return f"{host}:{port}"


def _announce(
    config: settings.Config, address: str, security: Security | None, *, join_address: str | None
) -> None:
    """Tell the person who started it where it serves and how to use it (stdout)."""
    print(f"pilothouse control plane serving on {address}", flush=True)
    if security is None:
        print("WARNING: --insecure: no TLS, no authentication (development only)", flush=True)
        return
    print(
        f"nodes join on {join_address} (CA {security.pki.ca_cert_hash})\n"
        f"admin credentials: {config.admin_config}\n"
        f"  use them with: export PILOTHOUSE_CONFIG={config.admin_config}\n"
        "  (or --config; keep the file and pki/ private)\n"
        "  join a node: pilothouse token create --print-join-command",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `pilothouse controlplane` and `python3 -m controlplane`."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        nodes, rest = node_flags.split(argv)
        ha, rest = ha_flags.split(rest)
        services, rest = service_flags.split(rest, cluster_cidr=nodes.cluster_cidr)
        operate, rest = operate_flags.split(rest)
        if "-h" in rest or "--help" in rest:
            full = settings.parser()
            node_flags.add_flags(full)
            ha_flags.add_flags(full)
            service_flags.add_flags(full)
            operate_flags.add_flags(full)
            full.print_help()
            return 0
        config = settings.parse(rest)
    except (
        settings.ConfigError,
        node_flags.SettingsError,
        ha_flags.SettingsError,
        service_flags.SettingsError,
        operate_flags.SettingsError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logs.setup(debug=config.debug)
    if ha.init_pki:
        foundation.init_pki(config, ha)
        print(f"PKI made under {config.pki_dir}: copy it to the other members' data dirs")
        return 0
    try:
        return asyncio.run(signals.run_until_signalled(serve(config, nodes, ha, services, operate)))
    except (EtcdNotFound, EtcdStartFailed, BindError, settings.ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
