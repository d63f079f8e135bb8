"""The wire protocol between a node and its clients, written down once.

Everything both sides of a connection must agree on lives here, whichever carries it
(HTTP, gRPC, a channel's framed progress stream): the auth header, the signed probe, the
framing of streamed answers, FileKeys, and the table that turns a failure into an error
type on the node and back into the same `KacheryError` subclass on the client. The HTTP
routes, the gRPC service, the channel routes and every network backend import these
names; none of them spells the protocol out again.

    >>> encode_frame({"type": "finished"})
    b'19#{"type":"finished"}'
    >>> import io
    >>> list(read_frames(io.BytesIO(b'19#{"type":"finished"}').read))
    [{'type': 'finished'}]
    >>> error_from_type("notFound", "sha1://... is not here")
    NotFoundError('sha1://... is not here')

Only the standard library is imported here: the CLI loads this module on every command
that talks to a node.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Type

from kachery_core.content.uri import ChunkOf, ContentUri, is_sha1
from kachery_core.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    KacheryError,
    NotFoundError,
    StaleLinkError,
    TransportError,
    UnsupportedOperation,
)

# -- credentials ---------------------------------------------------------------------

AUTH_HEADER = "KACHERY-CLIENT-AUTH-CODE"
"""HTTP header carrying the client-auth code or an access token (every route but /probe)."""
AUTH_METADATA = AUTH_HEADER.lower()
"""The same credential as gRPC metadata (gRPC metadata keys are lowercase)."""

# -- the signed probe ----------------------------------------------------------------

PROBE_NONCE = re.compile(r"[0-9a-fA-F]{1,128}")
"""What a client may send as `GET /probe?nonce=` (or `ProbeRequest.nonce`)."""


def new_probe_nonce() -> str:
    return os.urandom(16).hex()


def probe_message(nonce: str) -> bytes:
    """The bytes a node signs with its key to prove, for this nonce, that it is that node."""
    return f"kachery-probe:{nonce}".encode()


def check_probe_nonce(nonce: str) -> str:
    if not PROBE_NONCE.fullmatch(nonce):
        raise InvalidInputError(f"nonce must be 1 to 128 hex digits, not {nonce[:40]!r}")
    return nonce


def probe_signature_ok(node_id: str, nonce: str, signature: object) -> bool:
    """True when `signature` (hex) is node `node_id`'s signature of the probe for `nonce`."""
    from kachery_core.protocol.node_key import verify_signature

    return isinstance(signature, str) and verify_signature(node_id, probe_message(nonce), signature)


# -- error types ---------------------------------------------------------------------

ERROR_TYPE_HEADER = "KACHERY-ERROR-TYPE"
"""Sent with every 4xx/5xx answer of the HTTP API: the error type of the failure."""
ERROR_TYPE_METADATA = ERROR_TYPE_HEADER.lower()
"""The same, as trailing metadata of a failed gRPC call."""

ERROR_TYPES: Dict[str, Type[KacheryError]] = {
    "staleLink": StaleLinkError,
    "notFound": NotFoundError,
    "integrity": IntegrityError,
    "unsupported": KacheryError,
    "unreachable": TransportError,
    "refused": TransportError,
    "invalid": InvalidInputError,
    "error": KacheryError,
}
"""Error type on the wire -> the exception a client raises. Old clients ignore the type."""

_TYPE_OF: Tuple[Tuple[Type[BaseException], str], ...] = (
    (StaleLinkError, "staleLink"),  # before NotFoundError, its base class
    (NotFoundError, "notFound"),
    (IntegrityError, "integrity"),
    (UnsupportedOperation, "unsupported"),
    (TransportError, "unreachable"),
    (InvalidInputError, "invalid"),
    (ConfigError, "invalid"),
    (ValueError, "invalid"),  # InvalidUriError, and a node's own BadRequest
)


def error_type(exc: BaseException) -> str:
    """The wire name of a failure, for an error frame, header or gRPC trailer."""
    for cls, name in _TYPE_OF:
        if isinstance(exc, cls):
            return name
    return "error"


def error_from_type(
    kind: Optional[str], message: str, default: Type[KacheryError] = KacheryError
) -> KacheryError:
    """The exception a client raises for a failure the node reported as `kind`."""
    cls = ERROR_TYPES.get(kind or "", default) if kind else default
    return cls(one_line(message))


def one_line(text: str, limit: int = 1000) -> str:
    """A node's message as one line (never a traceback), cut to `limit` characters."""
    return " ".join(str(text).split())[:limit]


# -- framed streams ------------------------------------------------------------------
#
# `/loadFile` and `/channel/upload` answer a stream of messages, each the decimal length
# of a JSON document, `#`, then the document: progress, then finished or error.

MAX_FRAME = 1 << 20
"""Longest frame a client accepts; a node never sends one near this size."""


def encode_frame(message: Mapping[str, Any]) -> bytes:
    text = json.dumps(message, separators=(",", ":")).encode()
    return str(len(text)).encode() + b"#" + text


def progress_frame(loaded: int, total: int, stage: Optional[str] = None) -> Dict[str, Any]:
    message: Dict[str, Any] = {"type": "progress", "bytesLoaded": loaded, "bytesTotal": total}
    if stage is not None:
        message["stage"] = stage
    return message


def finished_frame(**fields: Any) -> Dict[str, Any]:
    return {"type": "finished", **fields}


def error_frame(exc: BaseException) -> Dict[str, Any]:
    return {"type": "error", "error": one_line(str(exc)), "errorType": error_type(exc)}


def read_frames(read: Callable[[int], bytes]) -> Iterator[Dict[str, Any]]:
    """Parse `<length>#<json>` messages from a byte stream as they arrive.

    `read(n)` returns up to n bytes, or b"" at the end. A stream that ends mid-message or is
    not framed raises `TransportError`; JSON that is not an object is skipped.
    """
    while True:
        digits = b""
        while True:
            c = read(1)
            if not c:
                if digits:
                    raise TransportError("the node's answer stream ended mid-message")
                return
            if c == b"#":
                break
            if not c.isdigit() or len(digits) > 7:
                raise TransportError("the node's answer stream is not framed as expected")
            digits += c
        length = int(digits)
        if length > MAX_FRAME:
            raise TransportError(f"the node sent a frame of {length} bytes, over the limit")
        data = b""
        while len(data) < length:
            piece = read(length - len(data))
            if not piece:
                raise TransportError("the node's answer stream ended mid-message")
            data += piece
        try:
            message = json.loads(data)
        except ValueError:
            raise TransportError("the node sent a frame that is not JSON") from None
        if isinstance(message, dict):
            yield message


# -- batch downloads -----------------------------------------------------------------
#
# `POST /downloadFiles {"files": [{"sha1": S}, ...]}` answers many small objects in one
# framed stream, one frame per object asked for, in the order asked:
#
#   {"type": "file", "sha1": S, "size": N}    then exactly N raw bytes of the object
#   {"type": "notFound", "sha1": S, "error": str, "errorType": str}    not on the node
#   {"type": "notSent", "sha1": S, "size": N, "reason": str}    left out of this answer (larger
#       than BATCH_MAX_OBJECT_BYTES, or over the answer's BATCH_MAX_BYTES): fetch it alone
#       (`/downloadFileData`)
#
# then `{"type": "finished"}`; an `error` frame (as above) ends a batch that failed as a
# whole. A client checks each object's size and hash before keeping it, and reads no more
# than the size announced. A node without the route answers 404: fetch one by one.

BATCH_MAX_FILES = 1000
"""Most objects one batch request may ask for (more: 400)."""
BATCH_MAX_OBJECT_BYTES = 1 << 20
"""Largest object sent inside a batch; larger ones are `notSent`, to go alone."""
BATCH_MAX_BYTES = 64 << 20
"""Most object bytes in one batch answer; objects past it are `notSent`."""


def batch_file_frame(sha1: str, size: int) -> Dict[str, Any]:
    return {"type": "file", "sha1": sha1, "size": size}


def batch_not_found_frame(sha1: str, exc: BaseException) -> Dict[str, Any]:
    message = error_frame(exc)
    message.update(type="notFound", sha1=sha1)
    return message


def batch_not_sent_frame(sha1: str, size: int, reason: str) -> Dict[str, Any]:
    return {"type": "notSent", "sha1": sha1, "size": size, "reason": reason}


# -- batch stores --------------------------------------------------------------------
#
# `POST /storeFiles` takes many small objects in one body, framed like a batch download's
# answer: per object `{"type": "file", "sha1": S, "size": N}` then exactly N raw bytes, and
# `{"type": "finished"}` last. The node hashes each object and keeps it only if it hashes
# to S (staging file, then rename). `POST /storeLocalFiles {"localFilePaths": [P, ...]}`
# names files of the node's machine instead (the client-auth code only, as `/storeFile`).
# Both answer `{"success": true, "stored": [ITEM, ...]}`, one ITEM per object, in order:
# `{"sha1": S, "manifestSha1": M}` when stored, else `{"error": str, "errorType": str}`.
# A node without the routes answers 404: store one object at a time.

STORE_BATCH_MAX_FILES = 1000
"""Most objects one batch store may carry (more: 400)."""
STORE_BATCH_MAX_OBJECT_BYTES = 1 << 20
"""Largest object a batch store takes (larger: 400 for bytes, an item error for paths)."""
STORE_BATCH_MAX_BYTES = 16 << 20
"""Most object bytes one batch store may carry (more: 400 for bytes, item errors for paths)."""
STORE_BATCH_MAX_HEADER = 1024
"""Longest header frame of a batch store body."""


def batch_store_item(stored: Any) -> Dict[str, Any]:
    """One answer item: a `StoredObject`, or the failure of that one object."""
    if isinstance(stored, BaseException):
        return {"error": one_line(str(stored)), "errorType": error_type(stored)}
    return {"sha1": stored.sha1, "manifestSha1": stored.manifest_sha1}


# -- FileKeys ------------------------------------------------------------------------


def file_key(uri: ContentUri) -> Dict[str, Any]:
    """The JSON FileKey naming `uri`'s object (its label is never sent)."""
    key: Dict[str, Any] = {"sha1": uri.sha1}
    if uri.manifest_sha1:
        key["manifestSha1"] = uri.manifest_sha1
    if uri.chunk_of:
        key["chunkOf"] = {
            "fileKey": {"sha1": uri.chunk_of.sha1},
            "startByte": uri.chunk_of.start,
            "endByte": uri.chunk_of.end,
        }
    return key


def parse_file_key(key: object, where: str = "fileKey") -> ContentUri:
    """The object a JSON FileKey names, every hash and number checked.

    Raises `InvalidInputError` naming the bad field: a FileKey is never turned into a path
    unchecked.
    """
    doc = _object(key, where)
    sha1 = _sha1(doc, "sha1", where)
    manifest = _sha1(doc, "manifestSha1", where) if doc.get("manifestSha1") is not None else None
    chunk_of = None
    if doc.get("chunkOf") is not None:
        chunk = _object(doc["chunkOf"], f"{where}.chunkOf")
        whole = _sha1(_object(chunk.get("fileKey"), f"{where}.chunkOf.fileKey"), "sha1", where)
        start = _count(chunk, "startByte", f"{where}.chunkOf")
        end = _count(chunk, "endByte", f"{where}.chunkOf")
        if start > end:
            raise InvalidInputError(f"{where}.chunkOf range {start}-{end} is not a range")
        chunk_of = ChunkOf(whole, start, end)
    return ContentUri(sha1, None, manifest, chunk_of)


def _object(value: object, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where} must be an object, not {_kind(value)}")
    return value


def _sha1(doc: Dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not is_sha1(value):
        shown = repr(value)[:60] if value is not None else "missing"
        raise InvalidInputError(f"{where}.{key} must be a SHA-1 hash (40 hex digits), not {shown}")
    assert isinstance(value, str)
    return value.lower()


MAX_BYTE_OFFSET = (1 << 63) - 1


def _count(doc: Dict[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{where}.{key} must be an integer, not {_kind(value)}")
    if not 0 <= value <= MAX_BYTE_OFFSET:
        raise InvalidInputError(f"{where}.{key} must be from 0 to 2^63-1, not {value}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(
        type(value), type(value).__name__
    )
