import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from pilothouse.v1 import agent_pb2 as _agent_pb2
from pilothouse.v1 import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldError(_message.Message):
    __slots__ = ("file", "document", "field", "message")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    file: str
    document: int
    field: str
    message: str
    def __init__(self, file: _Optional[str] = ..., document: _Optional[int] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class FieldErrors(_message.Message):
    __slots__ = ("errors",)
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[FieldError]
    def __init__(self, errors: _Optional[_Iterable[_Union[FieldError, _Mapping]]] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("object", "dry_run", "field_manager")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    FIELD_MANAGER_FIELD_NUMBER: _ClassVar[int]
    object: _objects_pb2.Object
    dry_run: bool
    field_manager: str
    def __init__(self, object: _Optional[_Union[_objects_pb2.Object, _Mapping]] = ..., dry_run: _Optional[bool] = ..., field_manager: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("object", "result")
    class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RESULT_UNSPECIFIED: _ClassVar[ApplyResponse.Result]
        CREATED: _ClassVar[ApplyResponse.Result]
        CONFIGURED: _ClassVar[ApplyResponse.Result]
        UNCHANGED: _ClassVar[ApplyResponse.Result]
    RESULT_UNSPECIFIED: ApplyResponse.Result
    CREATED: ApplyResponse.Result
    CONFIGURED: ApplyResponse.Result
    UNCHANGED: ApplyResponse.Result
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    object: _objects_pb2.Object
    result: ApplyResponse.Result
    def __init__(self, object: _Optional[_Union[_objects_pb2.Object, _Mapping]] = ..., result: _Optional[_Union[ApplyResponse.Result, str]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind", "namespace", "label_selector", "field_selector")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    FIELD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    label_selector: str
    field_selector: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., label_selector: _Optional[str] = ..., field_selector: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("items", "resource_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Object]
    resource_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[_objects_pb2.Object, _Mapping]]] = ..., resource_version: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name", "resource_version", "propagation_policy")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROPAGATION_POLICY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    resource_version: str
    propagation_policy: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., resource_version: _Optional[str] = ..., propagation_policy: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: _objects_pb2.Object
    def __init__(self, object: _Optional[_Union[_objects_pb2.Object, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("kind", "namespace", "label_selector", "field_selector", "resource_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    FIELD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    label_selector: str
    field_selector: str
    resource_version: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., label_selector: _Optional[str] = ..., field_selector: _Optional[str] = ..., resource_version: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("type", "object")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[WatchEvent.Type]
        ADDED: _ClassVar[WatchEvent.Type]
        MODIFIED: _ClassVar[WatchEvent.Type]
        DELETED: _ClassVar[WatchEvent.Type]
        BOOKMARK: _ClassVar[WatchEvent.Type]
    TYPE_UNSPECIFIED: WatchEvent.Type
    ADDED: WatchEvent.Type
    MODIFIED: WatchEvent.Type
    DELETED: WatchEvent.Type
    BOOKMARK: WatchEvent.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    type: WatchEvent.Type
    object: _objects_pb2.Object
    def __init__(self, type: _Optional[_Union[WatchEvent.Type, str]] = ..., object: _Optional[_Union[_objects_pb2.Object, _Mapping]] = ...) -> None: ...

class ScaleRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name", "replicas")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    replicas: int
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class PodLogsRequest(_message.Message):
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

class LogChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class RotateSecretsKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateSecretsKeyResponse(_message.Message):
    __slots__ = ("key_id", "secrets_rewritten", "retired_key_ids")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRETS_REWRITTEN_FIELD_NUMBER: _ClassVar[int]
    RETIRED_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    secrets_rewritten: int
    retired_key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key_id: _Optional[str] = ..., secrets_rewritten: _Optional[int] = ..., retired_key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListNodeImagesRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class NodeImages(_message.Message):
    __slots__ = ("node", "images", "error", "filesystem_capacity_bytes", "filesystem_available_bytes")
    NODE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    node: str
    images: _containers.RepeatedCompositeFieldContainer[_agent_pb2.NodeImage]
    error: str
    filesystem_capacity_bytes: int
    filesystem_available_bytes: int
    def __init__(self, node: _Optional[str] = ..., images: _Optional[_Iterable[_Union[_agent_pb2.NodeImage, _Mapping]]] = ..., error: _Optional[str] = ..., filesystem_capacity_bytes: _Optional[int] = ..., filesystem_available_bytes: _Optional[int] = ...) -> None: ...

class ListNodeImagesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeImages]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeImages, _Mapping]]] = ...) -> None: ...

class ListControlPlanesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EtcdMemberStatus(_message.Message):
    __slots__ = ("name", "client_urls", "healthy", "leader", "error", "db_size_bytes", "raft_term")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URLS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RAFT_TERM_FIELD_NUMBER: _ClassVar[int]
    name: str
    client_urls: _containers.RepeatedScalarFieldContainer[str]
    healthy: bool
    leader: bool
    error: str
    db_size_bytes: int
    raft_term: int
    def __init__(self, name: _Optional[str] = ..., client_urls: _Optional[_Iterable[str]] = ..., healthy: _Optional[bool] = ..., leader: _Optional[bool] = ..., error: _Optional[str] = ..., db_size_bytes: _Optional[int] = ..., raft_term: _Optional[int] = ...) -> None: ...

class ControlPlaneMember(_message.Message):
    __slots__ = ("name", "address", "alive", "leader", "term", "etcd_endpoint", "etcd")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    ETCD_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ETCD_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    alive: bool
    leader: bool
    term: int
    etcd_endpoint: str
    etcd: EtcdMemberStatus
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., alive: _Optional[bool] = ..., leader: _Optional[bool] = ..., term: _Optional[int] = ..., etcd_endpoint: _Optional[str] = ..., etcd: _Optional[_Union[EtcdMemberStatus, _Mapping]] = ...) -> None: ...

class LeaderChange(_message.Message):
    __slots__ = ("time", "leader", "term", "previous", "previous_term", "ended", "reason")
    TIME_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TERM_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    time: float
    leader: str
    term: int
    previous: str
    previous_term: int
    ended: float
    reason: str
    def __init__(self, time: _Optional[float] = ..., leader: _Optional[str] = ..., term: _Optional[int] = ..., previous: _Optional[str] = ..., previous_term: _Optional[int] = ..., ended: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ListControlPlanesResponse(_message.Message):
    __slots__ = ("members", "etcd", "history", "served_by")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ETCD_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[ControlPlaneMember]
    etcd: _containers.RepeatedCompositeFieldContainer[EtcdMemberStatus]
    history: _containers.RepeatedCompositeFieldContainer[LeaderChange]
    served_by: str
    def __init__(self, members: _Optional[_Iterable[_Union[ControlPlaneMember, _Mapping]]] = ..., etcd: _Optional[_Iterable[_Union[EtcdMemberStatus, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[LeaderChange, _Mapping]]] = ..., served_by: _Optional[str] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node", "instance_id")
    NODE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    instance_id: str
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ..., instance_id: _Optional[str] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("node", "heartbeat_interval_ms", "status_interval_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    heartbeat_interval_ms: int
    status_interval_ms: int
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ..., heartbeat_interval_ms: _Optional[int] = ..., status_interval_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_name", "instance_id", "status", "ack")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    instance_id: str
    status: _objects_pb2.NodeStatus
    ack: bool
    def __init__(self, node_name: _Optional[str] = ..., instance_id: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.NodeStatus, _Mapping]] = ..., ack: _Optional[bool] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SignNodeCertificateRequest(_message.Message):
    __slots__ = ("token", "node_name", "csr_pem")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    token: str
    node_name: str
    csr_pem: str
    def __init__(self, token: _Optional[str] = ..., node_name: _Optional[str] = ..., csr_pem: _Optional[str] = ...) -> None: ...

class SignNodeCertificateResponse(_message.Message):
    __slots__ = ("cert_pem", "ca_cert_pem")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    cert_pem: str
    ca_cert_pem: str
    def __init__(self, cert_pem: _Optional[str] = ..., ca_cert_pem: _Optional[str] = ...) -> None: ...

class BootstrapToken(_message.Message):
    __slots__ = ("id", "description", "created", "expires", "state", "usages", "node_name", "single_use")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USAGES_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    SINGLE_USE_FIELD_NUMBER: _ClassVar[int]
    id: str
    description: str
    created: _timestamp_pb2.Timestamp
    expires: _timestamp_pb2.Timestamp
    state: str
    usages: _containers.RepeatedScalarFieldContainer[str]
    node_name: str
    single_use: bool
    def __init__(self, id: _Optional[str] = ..., description: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[str] = ..., usages: _Optional[_Iterable[str]] = ..., node_name: _Optional[str] = ..., single_use: _Optional[bool] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("ttl_seconds", "description", "usages", "node_name", "single_use")
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    USAGES_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    SINGLE_USE_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    description: str
    usages: _containers.RepeatedScalarFieldContainer[str]
    node_name: str
    single_use: bool
    def __init__(self, ttl_seconds: _Optional[int] = ..., description: _Optional[str] = ..., usages: _Optional[_Iterable[str]] = ..., node_name: _Optional[str] = ..., single_use: _Optional[bool] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "info", "ca_cert_hash", "join_address")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_HASH_FIELD_NUMBER: _ClassVar[int]
    JOIN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    token: str
    info: BootstrapToken
    ca_cert_hash: str
    join_address: str
    def __init__(self, token: _Optional[str] = ..., info: _Optional[_Union[BootstrapToken, _Mapping]] = ..., ca_cert_hash: _Optional[str] = ..., join_address: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[BootstrapToken]
    def __init__(self, tokens: _Optional[_Iterable[_Union[BootstrapToken, _Mapping]]] = ...) -> None: ...

class DeleteTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: BootstrapToken
    def __init__(self, token: _Optional[_Union[BootstrapToken, _Mapping]] = ...) -> None: ...

class ApproveNodeRequest(_message.Message):
    __slots__ = ("node_name", "ttl_seconds")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    ttl_seconds: int
    def __init__(self, node_name: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ApproveNodeResponse(_message.Message):
    __slots__ = ("node_name", "expires")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    expires: _timestamp_pb2.Timestamp
    def __init__(self, node_name: _Optional[str] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevokeNodeRequest(_message.Message):
    __slots__ = ("node_name",)
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    def __init__(self, node_name: _Optional[str] = ...) -> None: ...

class RevokeNodeResponse(_message.Message):
    __slots__ = ("node_name", "revoked_at")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, node_name: _Optional[str] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TopPodsRequest(_message.Message):
    __slots__ = ("namespace", "label_selector")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    label_selector: str
    def __init__(self, namespace: _Optional[str] = ..., label_selector: _Optional[str] = ...) -> None: ...

class TopPodsResponse(_message.Message):
    __slots__ = ("pods", "errors")
    PODS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[_agent_pb2.PodUsage]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pods: _Optional[_Iterable[_Union[_agent_pb2.PodUsage, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class TopNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopNodesResponse(_message.Message):
    __slots__ = ("nodes", "errors")
    NODES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_agent_pb2.NodeUsageSample]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_agent_pb2.NodeUsageSample, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...
