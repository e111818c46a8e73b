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
    __slots__ = ("pods", "services_included", "services", "endpoint_slices", "network", "fence", "config_maps", "secrets", "peers_included", "peers", "peers_version", "peers_changes", "peers_base", "peers_removed")
    PODS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SLICES_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_MAPS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    PEERS_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PEERS_VERSION_FIELD_NUMBER: _ClassVar[int]
    PEERS_CHANGES_FIELD_NUMBER: _ClassVar[int]
    PEERS_BASE_FIELD_NUMBER: _ClassVar[int]
    PEERS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Pod]
    services_included: bool
    services: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Service]
    endpoint_slices: _containers.RepeatedCompositeFieldContainer[_objects_pb2.EndpointSlice]
    network: ClusterNetwork
    fence: bool
    config_maps: _containers.RepeatedCompositeFieldContainer[_objects_pb2.ConfigMap]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    peers_included: bool
    peers: _containers.RepeatedCompositeFieldContainer[PeerNode]
    peers_version: int
    peers_changes: bool
    peers_base: int
    peers_removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pods: _Optional[_Iterable[_Union[_objects_pb2.Pod, _Mapping]]] = ..., services_included: _Optional[bool] = ..., services: _Optional[_Iterable[_Union[_objects_pb2.Service, _Mapping]]] = ..., endpoint_slices: _Optional[_Iterable[_Union[_objects_pb2.EndpointSlice, _Mapping]]] = ..., network: _Optional[_Union[ClusterNetwork, _Mapping]] = ..., fence: _Optional[bool] = ..., config_maps: _Optional[_Iterable[_Union[_objects_pb2.ConfigMap, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ..., peers_included: _Optional[bool] = ..., peers: _Optional[_Iterable[_Union[PeerNode, _Mapping]]] = ..., peers_version: _Optional[int] = ..., peers_changes: _Optional[bool] = ..., peers_base: _Optional[int] = ..., peers_removed: _Optional[_Iterable[str]] = ...) -> None: ...

class PeerNode(_message.Message):
    __slots__ = ("name", "address", "pod_cidr")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    POD_CIDR_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    pod_cidr: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., pod_cidr: _Optional[str] = ...) -> None: ...

class SyncPodsResponse(_message.Message):
    __slots__ = ("rejected", "services_programmed", "services_error", "routes_programmed", "routes_error", "peers_version")
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
    ROUTES_PROGRAMMED_FIELD_NUMBER: _ClassVar[int]
    ROUTES_ERROR_FIELD_NUMBER: _ClassVar[int]
    PEERS_VERSION_FIELD_NUMBER: _ClassVar[int]
    rejected: _containers.ScalarMap[str, str]
    services_programmed: bool
    services_error: str
    routes_programmed: bool
    routes_error: str
    peers_version: int
    def __init__(self, rejected: _Optional[_Mapping[str, str]] = ..., services_programmed: _Optional[bool] = ..., services_error: _Optional[str] = ..., routes_programmed: _Optional[bool] = ..., routes_error: _Optional[str] = ..., peers_version: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("namespace", "pod", "container", "tail_lines", "follow", "previous", "since_time", "timestamps")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    SINCE_TIME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    container: str
    tail_lines: int
    follow: bool
    previous: bool
    since_time: _timestamp_pb2.Timestamp
    timestamps: bool
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., tail_lines: _Optional[int] = ..., follow: _Optional[bool] = ..., previous: _Optional[bool] = ..., since_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timestamps: _Optional[bool] = ...) -> None: ...

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

class TerminalSize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ExecStart(_message.Message):
    __slots__ = ("namespace", "pod", "container", "command", "stdin", "tty", "size")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    container: str
    command: _containers.RepeatedScalarFieldContainer[str]
    stdin: bool
    tty: bool
    size: TerminalSize
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., stdin: _Optional[bool] = ..., tty: _Optional[bool] = ..., size: _Optional[_Union[TerminalSize, _Mapping]] = ...) -> None: ...

class ExecInput(_message.Message):
    __slots__ = ("start", "stdin", "stdin_closed", "resize")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDIN_CLOSED_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    start: ExecStart
    stdin: bytes
    stdin_closed: bool
    resize: TerminalSize
    def __init__(self, start: _Optional[_Union[ExecStart, _Mapping]] = ..., stdin: _Optional[bytes] = ..., stdin_closed: _Optional[bool] = ..., resize: _Optional[_Union[TerminalSize, _Mapping]] = ...) -> None: ...

class ExecExit(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ExecOutput(_message.Message):
    __slots__ = ("started", "stdout", "stderr", "exit")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    started: bool
    stdout: bytes
    stderr: bytes
    exit: ExecExit
    def __init__(self, started: _Optional[bool] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...

class PortForwardStart(_message.Message):
    __slots__ = ("namespace", "pod", "port")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    port: int
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class PortForwardInput(_message.Message):
    __slots__ = ("start", "data", "close_write")
    START_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CLOSE_WRITE_FIELD_NUMBER: _ClassVar[int]
    start: PortForwardStart
    data: bytes
    close_write: bool
    def __init__(self, start: _Optional[_Union[PortForwardStart, _Mapping]] = ..., data: _Optional[bytes] = ..., close_write: _Optional[bool] = ...) -> None: ...

class PortForwardOutput(_message.Message):
    __slots__ = ("connected", "data", "closed")
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    connected: bool
    data: bytes
    closed: bool
    def __init__(self, connected: _Optional[bool] = ..., data: _Optional[bytes] = ..., closed: _Optional[bool] = ...) -> None: ...

class ContainerUsage(_message.Message):
    __slots__ = ("name", "cpu_nanocores", "memory_working_set_bytes", "restarts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_NANOCORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_WORKING_SET_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu_nanocores: int
    memory_working_set_bytes: int
    restarts: int
    def __init__(self, name: _Optional[str] = ..., cpu_nanocores: _Optional[int] = ..., memory_working_set_bytes: _Optional[int] = ..., restarts: _Optional[int] = ...) -> None: ...

class PodUsage(_message.Message):
    __slots__ = ("namespace", "name", "uid", "timestamp", "window_seconds", "containers", "network_rx_bytes", "network_tx_bytes")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_RX_BYTES_FIELD_NUMBER: _ClassVar[int]
    NETWORK_TX_BYTES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    uid: str
    timestamp: _timestamp_pb2.Timestamp
    window_seconds: float
    containers: _containers.RepeatedCompositeFieldContainer[ContainerUsage]
    network_rx_bytes: int
    network_tx_bytes: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., uid: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_seconds: _Optional[float] = ..., containers: _Optional[_Iterable[_Union[ContainerUsage, _Mapping]]] = ..., network_rx_bytes: _Optional[int] = ..., network_tx_bytes: _Optional[int] = ...) -> None: ...

class NodeUsageSample(_message.Message):
    __slots__ = ("name", "timestamp", "window_seconds", "cpu_nanocores", "memory_working_set_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CPU_NANOCORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_WORKING_SET_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    timestamp: _timestamp_pb2.Timestamp
    window_seconds: float
    cpu_nanocores: int
    memory_working_set_bytes: int
    def __init__(self, name: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_seconds: _Optional[float] = ..., cpu_nanocores: _Optional[int] = ..., memory_working_set_bytes: _Optional[int] = ...) -> None: ...

class UsageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UsageResponse(_message.Message):
    __slots__ = ("node", "pods")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    node: NodeUsageSample
    pods: _containers.RepeatedCompositeFieldContainer[PodUsage]
    def __init__(self, node: _Optional[_Union[NodeUsageSample, _Mapping]] = ..., pods: _Optional[_Iterable[_Union[PodUsage, _Mapping]]] = ...) -> None: ...
