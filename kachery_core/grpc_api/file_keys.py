"""FileKeys as protobuf messages, both ways: the one place the gRPC API's `FileKey` is built
and read (the JSON form is in `kachery_core.protocol.wire`)."""

from __future__ import annotations

from kachery_core.content.uri import ChunkOf, ContentUri, check_sha1
from kachery_core.protocol.wire import MAX_BYTE_OFFSET

from ..errors import InvalidInputError
from . import kachery_pb2 as pb


def to_pb(uri: ContentUri) -> pb.FileKey:
    key = pb.FileKey(sha1=uri.sha1, manifest_sha1=uri.manifest_sha1 or "")
    if uri.chunk_of is not None:
        key.chunk_of.sha1 = uri.chunk_of.sha1
        key.chunk_of.start = uri.chunk_of.start
        key.chunk_of.end = uri.chunk_of.end
    return key


def from_pb(key: pb.FileKey) -> ContentUri:
    """The object a FileKey names, every hash checked (never turned into a path unchecked)."""
    sha1 = check_sha1(key.sha1, "sha1")
    manifest = check_sha1(key.manifest_sha1, "manifest_sha1") if key.manifest_sha1 else None
    chunk_of = None
    if key.HasField("chunk_of"):
        chunk = key.chunk_of
        if not 0 <= chunk.start <= chunk.end <= MAX_BYTE_OFFSET:
            raise InvalidInputError(f"chunk_of range {chunk.start}-{chunk.end} is not a range")
        chunk_of = ChunkOf(check_sha1(chunk.sha1, "chunk_of.sha1"), chunk.start, chunk.end)
    return ContentUri(sha1, None, manifest, chunk_of)
