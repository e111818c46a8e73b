"""EtcdCluster: what EtcdStore does beyond keys: leases, and the etcd cluster's members.

A mixin of `controlplane.store.etcd.EtcdStore`, split out to keep that module about keys; it
uses the store's endpoints and its one way of calling etcd (`_call`, which tries the next
endpoint when one cannot be reached).

- Leases are etcd's own; `keep_alive` is one round on a LeaseKeepAlive stream, and a lease
  that has ended is `NotFound`.
- `cluster_members` lists the members (MemberList) and asks each for its own Status, short
  deadline each, so a dead member shows as unhealthy with the reason; the members' client URLs
  become endpoints of the store (`add_endpoints`), so it can fail over to them.
- `defragment(URL)` defragments one member (see `controlplane.store.defrag` for when).
- `move_raft_leader(away_from=URL)` hands raft leadership from the member at URL to a healthy
  other one (MoveLeader), for `controlplane.leader.placement`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aetcd import rpc

from controlplane.store import Lease, NotFound, StoreError

log = structlog.get_logger(__name__)

_DEFRAG_WITHIN = 120.0  # seconds: a large database takes a while to rewrite


@dataclass(frozen=True, slots=True)
class EtcdMember:
    """One member of the etcd cluster as `cluster_members` found it."""

    name: str
    id: int
    client_urls: tuple[str, ...]
    healthy: bool
    leader: bool
    error: str = ""
    db_size: int = 0
    raft_term: int = 0
    db_size_in_use: int = 0  # the rest of db_size is free pages: defragmentation returns it


class EtcdCluster:
    """Leases and members; needs the EtcdStore it is mixed into."""

    _endpoints: list[Any]
    _timeout: float

    endpoints: list[str]  # EtcdStore's property

    async def _call(
        self, operation: Callable[[Any], Awaitable[Any]], *, service: str = "kv"
    ) -> Any:
        raise NotImplementedError  # EtcdStore's

    async def _client(self, index: int) -> tuple[int, Any]:
        raise NotImplementedError  # EtcdStore's

    def _translate(self, error: rpc.AioRpcError) -> StoreError:
        raise NotImplementedError  # EtcdStore's

    async def grant_lease(self, ttl: int) -> Lease:
        request = rpc.LeaseGrantRequest(TTL=ttl)
        response = await self._call(
            lambda stub: stub.LeaseGrant(request, timeout=self._timeout), service="lease"
        )
        if response.error:
            raise StoreError(f"etcd refused a lease of {ttl} s: {response.error}")
        return Lease(id=response.ID, ttl=response.TTL)

    async def keep_alive(self, lease: int) -> int:
        async def once(stub: rpc.LeaseStub) -> rpc.LeaseKeepAliveResponse:
            call = stub.LeaseKeepAlive(timeout=self._timeout)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease))
                return await call.read()
            finally:
                call.cancel()

        response = await self._call(once, service="lease")
        if not isinstance(response, rpc.LeaseKeepAliveResponse) or response.TTL <= 0:
            raise NotFound(f"lease {lease:x} not found: it expired or was revoked")
        return response.TTL

    async def revoke_lease(self, lease: int) -> None:
        request = rpc.LeaseRevokeRequest(ID=lease)
        with contextlib.suppress(NotFound):  # it has ended already
            await self._call(
                lambda stub: stub.LeaseRevoke(request, timeout=self._timeout), service="lease"
            )

    # -- members -------------------------------------------------------------------------

    def add_endpoints(self, urls: Sequence[str]) -> list[str]:
        """Also use these client URLs (other members of the cluster); returns the new ones.
        Existing endpoints keep their places, so the one in use stays in use."""
        known = set(self.endpoints)
        added = []
        for url in urls:
            if url in known:
                continue
            endpoint = _parse(url)
            if endpoint.secure != self._endpoints[0].secure:
                continue  # a member advertising the other scheme: not for this store
            self._endpoints.append(endpoint)
            known.add(url)
            added.append(url)
        if added:
            log.info("store.endpoints_added", endpoints=added)
        return added

    async def move_raft_leader(self, *, away_from: str) -> str | None:
        """If the etcd member serving `away_from` (a client URL) is the raft leader, hand
        raft leadership to a healthy other member; returns that member's name (None: nothing
        to do). etcd's MoveLeader, sent to the leader itself."""
        members = await self.cluster_members()
        own = next((m for m in members if away_from in m.client_urls), None)
        if own is None or not own.leader:
            return None
        target = next((m for m in members if m.healthy and m.id != own.id), None)
        if target is None:
            return None
        _, client = await self._client(self.endpoints.index(away_from))
        try:
            await rpc.MaintenanceStub(client.channel).MoveLeader(
                rpc.MoveLeaderRequest(targetID=target.id), timeout=self._timeout
            )
        except rpc.AioRpcError as error:
            raise self._translate(error) from error
        log.info("store.raft_leader_moved", old=own.name, new=target.name)
        return target.name

    async def cluster_members(self, *, status_within: float = 1.0) -> list[EtcdMember]:
        """The etcd cluster's members and how each answers right now (its own Status)."""
        listed = await self._call(
            lambda stub: stub.MemberList(rpc.MemberListRequest(), timeout=self._timeout),
            service="cluster",
        )
        self.add_endpoints([url for m in listed.members for url in m.clientURLs])
        urls = self.endpoints
        members = []
        for member in listed.members:
            status, error = None, "not started yet (no client URL)"
            for url in member.clientURLs:
                if url not in urls:
                    continue
                _, client = await self._client(urls.index(url))
                try:
                    status = await rpc.MaintenanceStub(client.channel).Status(
                        rpc.StatusRequest(), timeout=status_within
                    )
                    error = ", ".join(status.errors)
                    break
                except rpc.AioRpcError as failure:
                    error = f"{url}: {failure.code().name} {failure.details() or ''}".strip()
            members.append(
                EtcdMember(
                    name=member.name,
                    id=member.ID,
                    client_urls=tuple(member.clientURLs),
                    healthy=status is not None and not status.errors,
                    leader=status is not None and status.leader == member.ID,
                    error=error,
                    db_size=status.dbSize if status is not None else 0,
                    raft_term=status.raftTerm if status is not None else 0,
                    db_size_in_use=status.dbSizeInUse if status is not None else 0,
                )
            )
        return members

    async def defragment(self, url: str) -> None:
        """Defragment the member at client URL `url` (it answers nothing else meanwhile)."""
        _, client = await self._client(self.endpoints.index(url))
        try:
            await rpc.MaintenanceStub(client.channel).Defragment(
                rpc.DefragmentRequest(), timeout=_DEFRAG_WITHIN
            )
        except rpc.AioRpcError as error:
            raise self._translate(error) from error


def _parse(url: str) -> Any:
    from controlplane.store.etcdrpc import Endpoint  # the store's own parsing

    return Endpoint.parse(url)
