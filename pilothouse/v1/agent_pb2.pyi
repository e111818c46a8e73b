import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from pilothouse.v1 import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClusterNetwork(_message.Message):
    __slots__ = ("service_cidr", "cluster_cidr", "cluster_domain")
    SERVICE_CIDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CIDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    service_cidr: str
    cluster_cidr: str
    cluster_domain: str
    def __init__(self, service_cidr: _Optional[str] = ..., cluster_cidr: _Optional[str] = ..., cluster_domain: _Optional[str] = ...) -> None: ...

class SyncPodsRequest(_message.Message):
    __slots__ = ("pods", "services_included", "services", "endpoint_slices", "network", "fence", "config_maps", "secrets")
    PODS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SLICES_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_MAPS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Pod]
    services_included: bool
    services: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Service]
    endpoint_slices: _containers.RepeatedCompositeFieldContainer[_objects_pb2.EndpointSlice]
    network: ClusterNetwork
    fence: bool
    config_maps: _containers.RepeatedCompositeFieldContainer[_objects_pb2.ConfigMap]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    def __init__(self, pods: _Optional[_Iterable[_Union[_objects_pb2.Pod, _Mapping]]] = ..., services_included: _Optional[bool] = ..., services: _Optional[_Iterable[_Union[_objects_pb2.Service, _Mapping]]] = ..., endpoint_slices: _Optional[_Iterable[_Union[_objects_pb2.EndpointSlice, _Mapping]]] = ..., network: _Optional[_Union[ClusterNetwork, _Mapping]] = ..., fence: _Optional[bool] = ..., config_maps: _Optional[_Iterable[_Union[_objects_pb2.ConfigMap, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ...) -> None: ...

class SyncPodsResponse(_message.Message):
    __slots__ = ("rejected", "services_programmed", "services_error")
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    SERVICES_PROGRAMMED_FIELD_NUMBER: _ClassVar[int]
    SERVICES_ERROR_FIELD_NUMBER: _ClassVar[int]
    rejected: _containers.ScalarMap[str, str]
    services_programmed: bool
    services_error: str
    def __init__(self, rejected: _Optional[_Mapping[str, str]] = ..., services_programmed: _Optional[bool] = ..., services_error: _Optional[str] = ...) -> None: ...

class ListPodsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPodsResponse(_message.Message):
    __slots__ = ("pods",)
    PODS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Pod]
    def __init__(self, pods: _Optional[_Iterable[_Union[_objects_pb2.Pod, _Mapping]]] = ...) -> None: ...

class WatchPodsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PodStatusEvent(_message.Message):
    __slots__ = ("type", "pod", "events")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[PodStatusEvent.Type]
        UPDATED: _ClassVar[PodStatusEvent.Type]
        REMOVED: _ClassVar[PodStatusEvent.Type]
        NODE: _ClassVar[PodStatusEvent.Type]
    TYPE_UNSPECIFIED: PodStatusEvent.Type
    UPDATED: PodStatusEvent.Type
    REMOVED: PodStatusEvent.Type
    NODE: PodStatusEvent.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    type: PodStatusEvent.Type
    pod: _objects_pb2.Pod
    events: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Event]
    def __init__(self, type: _Optional[_Union[PodStatusEvent.Type, str]] = ..., pod: _Optional[_Union[_objects_pb2.Pod, _Mapping]] = ..., events: _Optional[_Iterable[_Union[_objects_pb2.Event, _Mapping]]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("namespace", "pod", "container", "tail_lines", "follow", "previous")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    container: str
    tail_lines: int
    follow: bool
    previous: bool
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., tail_lines: _Optional[int] = ..., follow: _Optional[bool] = ..., previous: _Optional[bool] = ...) -> None: ...

class LogsChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class NodeInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfoResponse(_message.Message):
    __slots__ = ("name", "capacity", "allocatable", "node_info")
    class CapacityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AllocatableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATABLE_FIELD_NUMBER: _ClassVar[int]
    NODE_INFO_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity: _containers.ScalarMap[str, str]
    allocatable: _containers.ScalarMap[str, str]
    node_info: _objects_pb2.NodeSystemInfo
    def __init__(self, name: _Optional[str] = ..., capacity: _Optional[_Mapping[str, str]] = ..., allocatable: _Optional[_Mapping[str, str]] = ..., node_info: _Optional[_Union[_objects_pb2.NodeSystemInfo, _Mapping]] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeImage(_message.Message):
    __slots__ = ("names", "digest", "size_bytes", "last_used", "pods")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    digest: str
    size_bytes: int
    last_used: _timestamp_pb2.Timestamp
    pods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ..., digest: _Optional[str] = ..., size_bytes: _Optional[int] = ..., last_used: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pods: _Optional[_Iterable[str]] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "filesystem_capacity_bytes", "filesystem_available_bytes")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[NodeImage]
    filesystem_capacity_bytes: int
    filesystem_available_bytes: int
    def __init__(self, images: _Optional[_Iterable[_Union[NodeImage, _Mapping]]] = ..., filesystem_capacity_bytes: _Optional[int] = ..., filesystem_available_bytes: _Optional[int] = ...) -> None: ...
