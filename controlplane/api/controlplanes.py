"""The ControlPlanes service: the members of this control plane, who leads, how etcd is.

Any member answers, from etcd (`controlplane.leader.members`) and from each etcd member's own
Status (`etcd_status`, the EtcdStore's `cluster_members`; None over a store that is not etcd).
A member's etcd is matched by the endpoint it advertises, else by name. Only admins may call
it (the authorizer's default for every method not made for nodes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from controlplane.api.errors import translated
from controlplane.leader import members as leader_members
from controlplane.store import Store, StoreError
from controlplane.store.etcdcluster import EtcdMember
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

EtcdStatus = Callable[[], Awaitable[list[EtcdMember]]]


class ControlPlanesServicer(api_grpc.ControlPlanesServicer):
    def __init__(self, store: Store, *, served_by: str, etcd_status: EtcdStatus | None) -> None:
        self._store = store
        self._served_by = served_by
        self._etcd_status = etcd_status

    async def List(
        self, request: api.ListControlPlanesRequest, context: grpc.aio.ServicerContext
    ) -> api.ListControlPlanesResponse:
        async with translated(context, method="ListControlPlanes"):
            known = await leader_members.read(self._store)
            etcd: list[EtcdMember] = []
            if self._etcd_status is not None:
                try:
                    etcd = await self._etcd_status()
                except StoreError:
                    etcd = []
            response = api.ListControlPlanesResponse(served_by=self._served_by)
            response.etcd.extend(_etcd(e) for e in etcd)
            for member in known.members:
                entry = response.members.add(
                    name=member.name,
                    address=member.address,
                    alive=member.alive,
                    leader=member.leader,
                    term=member.since,
                    etcd_endpoint=member.etcd,
                )
                own = next((e for e in etcd if member.etcd and member.etcd in e.client_urls), None)
                own = own or next((e for e in etcd if e.name == member.name), None)
                if own is not None:
                    entry.etcd.CopyFrom(_etcd(own))
            for change in known.history:
                response.history.add(
                    time=change.at,
                    leader=change.leader,
                    term=change.term,
                    previous=change.previous,
                    previous_term=change.previous_term,
                    ended=change.ended,
                    reason=change.reason,
                )
            return response
        raise AssertionError("unreachable")


def _etcd(member: EtcdMember) -> api.EtcdMemberStatus:
    return api.EtcdMemberStatus(
        name=member.name,
        client_urls=list(member.client_urls),
        healthy=member.healthy,
        leader=member.leader,
        error=member.error,
        db_size_bytes=member.db_size,
        raft_term=member.raft_term,
    )
