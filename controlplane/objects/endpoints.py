"""What a stored EndpointSlice says: which Service it serves, who manages it, which of its
endpoints take traffic.

Invariants (Kubernetes' definitions): a slice belongs to the Service named by its label
`kubernetes.io/service-name` in its own namespace; the endpointslice controller manages the
slices labelled `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`
(others are made by hand, for endpoints outside the cluster); an endpoint takes new traffic
when its `ready` condition is true or unset ("unknown" reads as ready).
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.v1 import objects_pb2

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"


def service_of(slice_: objects_pb2.EndpointSlice) -> str:
    """The name of the Service the slice belongs to ("" when it has no label)."""
    return slice_.metadata.labels.get(SERVICE_NAME_LABEL, "")


def is_managed(slice_: objects_pb2.EndpointSlice) -> bool:
    return slice_.metadata.labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def is_ready(endpoint: objects_pb2.Endpoint) -> bool:
    conditions = endpoint.conditions
    return not conditions.HasField("ready") or conditions.ready


def ready_addresses(slices: Iterable[objects_pb2.EndpointSlice]) -> frozenset[str]:
    """Every address that takes new traffic in `slices`."""
    return frozenset(
        address
        for slice_ in slices
        for endpoint in slice_.endpoints
        if is_ready(endpoint)
        for address in endpoint.addresses
    )
