from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: str
    def __init__(self, nonce: _Optional[str] = ...) -> None: ...

class ProbeReply(_message.Message):
    __slots__ = ("node_id", "daemon_version", "storage_dir", "label", "signature")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DAEMON_VERSION_FIELD_NUMBER: _ClassVar[int]
    STORAGE_DIR_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    daemon_version: str
    storage_dir: str
    label: str
    signature: str
    def __init__(self, node_id: _Optional[str] = ..., daemon_version: _Optional[str] = ..., storage_dir: _Optional[str] = ..., label: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class FileKey(_message.Message):
    __slots__ = ("sha1", "manifest_sha1", "chunk_of")
    SHA1_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA1_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OF_FIELD_NUMBER: _ClassVar[int]
    sha1: str
    manifest_sha1: str
    chunk_of: ChunkOf
    def __init__(self, sha1: _Optional[str] = ..., manifest_sha1: _Optional[str] = ..., chunk_of: _Optional[_Union[ChunkOf, _Mapping]] = ...) -> None: ...

class ChunkOf(_message.Message):
    __slots__ = ("sha1", "start", "end")
    SHA1_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    sha1: str
    start: int
    end: int
    def __init__(self, sha1: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class DataChunk(_message.Message):
    __slots__ = ("data", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...

class RangeRequest(_message.Message):
    __slots__ = ("file_key", "start", "end")
    FILE_KEY_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    file_key: FileKey
    start: int
    end: int
    def __init__(self, file_key: _Optional[_Union[FileKey, _Mapping]] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class StoredReply(_message.Message):
    __slots__ = ("sha1", "size", "manifest_sha1")
    SHA1_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA1_FIELD_NUMBER: _ClassVar[int]
    sha1: str
    size: int
    manifest_sha1: str
    def __init__(self, sha1: _Optional[str] = ..., size: _Optional[int] = ..., manifest_sha1: _Optional[str] = ...) -> None: ...

class LinkRequest(_message.Message):
    __slots__ = ("path", "size", "mtime")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    mtime: float
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., mtime: _Optional[float] = ...) -> None: ...

class MutableKey(_message.Message):
    __slots__ = ("key_json",)
    KEY_JSON_FIELD_NUMBER: _ClassVar[int]
    key_json: str
    def __init__(self, key_json: _Optional[str] = ...) -> None: ...

class MutableValue(_message.Message):
    __slots__ = ("found", "value_json")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value_json: str
    def __init__(self, found: bool = ..., value_json: _Optional[str] = ...) -> None: ...

class SetMutableRequest(_message.Message):
    __slots__ = ("key_json", "value_json", "update")
    KEY_JSON_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    key_json: str
    value_json: str
    update: bool
    def __init__(self, key_json: _Optional[str] = ..., value_json: _Optional[str] = ..., update: bool = ...) -> None: ...

class FeedName(_message.Message):
    __slots__ = ("feed_name",)
    FEED_NAME_FIELD_NUMBER: _ClassVar[int]
    feed_name: str
    def __init__(self, feed_name: _Optional[str] = ...) -> None: ...

class FeedId(_message.Message):
    __slots__ = ("feed_id",)
    FEED_ID_FIELD_NUMBER: _ClassVar[int]
    feed_id: str
    def __init__(self, feed_id: _Optional[str] = ...) -> None: ...

class Subfeed(_message.Message):
    __slots__ = ("feed_id", "subfeed_hash")
    FEED_ID_FIELD_NUMBER: _ClassVar[int]
    SUBFEED_HASH_FIELD_NUMBER: _ClassVar[int]
    feed_id: str
    subfeed_hash: str
    def __init__(self, feed_id: _Optional[str] = ..., subfeed_hash: _Optional[str] = ...) -> None: ...

class AppendMessagesRequest(_message.Message):
    __slots__ = ("subfeed", "messages_json")
    SUBFEED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_JSON_FIELD_NUMBER: _ClassVar[int]
    subfeed: Subfeed
    messages_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subfeed: _Optional[_Union[Subfeed, _Mapping]] = ..., messages_json: _Optional[_Iterable[str]] = ...) -> None: ...

class NumMessages(_message.Message):
    __slots__ = ("num_messages",)
    NUM_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    num_messages: int
    def __init__(self, num_messages: _Optional[int] = ...) -> None: ...

class SubfeedWatch(_message.Message):
    __slots__ = ("subfeed", "position")
    SUBFEED_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    subfeed: Subfeed
    position: int
    def __init__(self, subfeed: _Optional[_Union[Subfeed, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("watches", "wait_msec", "max_num_messages", "signed")
    class WatchesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SubfeedWatch
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SubfeedWatch, _Mapping]] = ...) -> None: ...
    WATCHES_FIELD_NUMBER: _ClassVar[int]
    WAIT_MSEC_FIELD_NUMBER: _ClassVar[int]
    MAX_NUM_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    watches: _containers.MessageMap[str, SubfeedWatch]
    wait_msec: int
    max_num_messages: int
    signed: bool
    def __init__(self, watches: _Optional[_Mapping[str, SubfeedWatch]] = ..., wait_msec: _Optional[int] = ..., max_num_messages: _Optional[int] = ..., signed: bool = ...) -> None: ...

class MessageList(_message.Message):
    __slots__ = ("messages_json",)
    MESSAGES_JSON_FIELD_NUMBER: _ClassVar[int]
    messages_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, messages_json: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchReply(_message.Message):
    __slots__ = ("messages",)
    class MessagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MessageList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MessageList, _Mapping]] = ...) -> None: ...
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.MessageMap[str, MessageList]
    def __init__(self, messages: _Optional[_Mapping[str, MessageList]] = ...) -> None: ...
