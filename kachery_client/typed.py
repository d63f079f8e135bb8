"""Objects as Python values: text, JSON, .npy arrays and pickles, on top of bytes.

`TypedObjects` gives `Client` its `store_text` ... `load_pkl`. A load whose bytes are not
in the format asked for raises `FormatError` naming the URI and what the bytes look like
(`sha1://... is not JSON (it starts with bytes 89 50 4e 47: a PNG?)`), not the decoder's
own error. numpy is imported only for a numpy value, and pickle only for a pickle.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any, Optional, Tuple

from kachery_core.errors import FormatError, InvalidInputError

if TYPE_CHECKING:
    from typing import Protocol

    import numpy

    from kachery_client.client import UriLike
    from kachery_core.backend.base import JSON

    class _Bytes(Protocol):
        def store_bytes(self, data: bytes, label: Optional[str] = None) -> str: ...

        def load_bytes(
            self,
            uri: UriLike,
            start: int = 0,
            end: Optional[int] = None,
            *,
            channel: Optional[str] = None,
        ) -> bytes: ...


MAX_JSON_ARRAY = 10_000
"""The most elements of a numpy array `store_json` writes as a list; store_npy beyond."""

_MAGIC: Tuple[Tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG"),
    (b"\xff\xd8\xff", "a JPEG"),
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "a zip (or .npz)"),
    (b"PK\x05\x06", "an empty zip"),
    (b"\x89HDF\r\n\x1a\n", "HDF5 (.h5, .nwb)"),
    (b"\x93NUMPY", "a .npy array"),
    (b"%PDF-", "a PDF"),
)


def sniff(data: bytes) -> Optional[str]:
    """What the first bytes suggest the object is (its magic number), "text", or None."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "a pickle"
    head = data[:64]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(data) == len(head) or exc.reason != "unexpected end of data":
            return None  # not just a character cut by taking the head
        text = head[: exc.start].decode("utf-8")
    return "text" if all(c.isprintable() or c in "\t\n\r" for c in text) else None


def describe(data: bytes) -> str:
    """The bytes as an error message shows them: `it starts with bytes 89 50 4e 47: a PNG?`."""
    if not data:
        return "it is empty"
    what = sniff(data)
    if what == "text":
        return f"it starts with {data[:24].decode('utf-8', 'replace')!r}"
    head = " ".join(f"{b:02x}" for b in data[:4])
    return f"it starts with bytes {head}" + (f": {what}?" if what else "")


RAW = "load_bytes or load_file give its bytes as they are"


def decode_text(uri: object, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte {data[exc.start]:#04x} at offset {exc.start}"
        raise FormatError(f"{uri} is not UTF-8 text ({where}; {describe(data)})", RAW) from None


def decode_json(uri: object, data: bytes) -> JSON:
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise FormatError(f"{uri} is not JSON ({describe(data)})", RAW) from None
    except ValueError as exc:
        detail = f"{exc}; " if sniff(data) == "text" else ""
        raise FormatError(f"{uri} is not JSON ({detail}{describe(data)})", RAW) from None


def decode_npy(uri: object, data: bytes) -> numpy.ndarray:
    if not data.startswith(b"\x93NUMPY"):
        raise FormatError(f"{uri} is not a .npy array ({describe(data)})", RAW)
    import numpy as np

    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise FormatError(
            f"{uri} is a .npy file numpy cannot load without pickle: {exc}",
            "load_npy loads arrays of numbers, booleans and strings only (never pickles)",
        ) from None


def decode_pkl(uri: object, data: bytes) -> Any:
    import pickle

    try:
        return pickle.loads(data)
    except (ImportError, AttributeError):
        raise  # a pickle whose classes this Python lacks: its own message says which
    except Exception as exc:
        if sniff(data) == "a pickle":
            raise FormatError(f"{uri} is a pickle that cannot be loaded: {exc}") from None
        raise FormatError(f"{uri} is not a pickle ({describe(data)})", RAW) from None


JSON_HINT = (
    "JSON holds dicts, lists, strings, numbers, booleans and None: store arrays with "
    "store_npy, other Python objects with store_pkl"
)


def encode_json(value: Any) -> bytes:
    """Compact JSON; numpy scalars as numbers and small arrays as lists; else one line."""
    try:
        text = json.dumps(value, separators=(",", ":"), default=_numpy_as_json)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"cannot store this value as JSON: {exc}", JSON_HINT) from None
    return text.encode("utf-8")


def _numpy_as_json(obj: Any) -> Any:
    """What `json.dumps` calls for a value it cannot write itself."""
    if type(obj).__module__ != "numpy":  # numpy is imported only for a numpy value
        raise TypeError(f"a {type(obj).__name__} is not JSON")
    import numpy as np

    if isinstance(obj, np.ndarray):
        if obj.size > MAX_JSON_ARRAY:
            raise InvalidInputError(
                f"cannot store a numpy array of {obj.size:,} elements as JSON "
                f"(store_json writes arrays of at most {MAX_JSON_ARRAY:,} as lists)",
                "store it with store_npy (exact dtype and shape, and compact)",
            )
        return obj.tolist()
    if isinstance(obj, np.generic):
        item = obj.item()
        if type(item).__module__ != "numpy":
            return item
    raise TypeError(f"a numpy {type(obj).__name__} is not JSON")


class TypedObjects:
    """`Client`'s methods for Python values, each one bytes object in a known format."""

    def store_text(self: _Bytes, text: str, label: str = "file.txt") -> str:
        """Store a string as UTF-8; return its `sha1://` URI."""
        return self.store_bytes(text.encode("utf-8"), label)

    def load_text(self: _Bytes, uri: UriLike, *, channel: Optional[str] = None) -> str:
        """The object as a string; `FormatError` naming the URI when it is not UTF-8."""
        return decode_text(uri, self.load_bytes(uri, channel=channel))

    def store_json(self: _Bytes, value: JSON, label: str = "file.json") -> str:
        """Store a value as compact JSON (keys in their order). numpy scalars become
        numbers and arrays of up to 10,000 elements lists; anything else JSON cannot hold
        raises `InvalidInputError` saying to use `store_npy` or `store_pkl`."""
        return self.store_bytes(encode_json(value), label)

    def load_json(self: _Bytes, uri: UriLike, *, channel: Optional[str] = None) -> JSON:
        """The JSON value stored at `uri`; `FormatError` naming the URI when it is not JSON."""
        return decode_json(uri, self.load_bytes(uri, channel=channel))

    def store_npy(self: _Bytes, array: numpy.ndarray, label: str = "file.npy") -> str:
        """Store a numpy array in .npy format, without pickle (object arrays are refused)."""
        import numpy as np

        buffer = io.BytesIO()
        try:
            np.save(buffer, np.asarray(array), allow_pickle=False)
        except ValueError as exc:
            raise InvalidInputError(
                f"cannot store this array as .npy: {exc}", "use store_pkl"
            ) from None
        return self.store_bytes(buffer.getvalue(), label)

    def load_npy(self: _Bytes, uri: UriLike, *, channel: Optional[str] = None) -> numpy.ndarray:
        """The .npy array stored at `uri`, never unpickled; `FormatError` naming the URI
        when the bytes are not a .npy array of plain values."""
        return decode_npy(uri, self.load_bytes(uri, channel=channel))

    def store_pkl(self: _Bytes, value: Any, label: str = "file.pkl") -> str:
        """Store any picklable object. Only load pickles from people you trust."""
        import pickle

        return self.store_bytes(pickle.dumps(value, protocol=4), label)

    def load_pkl(self: _Bytes, uri: UriLike, *, channel: Optional[str] = None) -> Any:
        """Unpickle the object at `uri` (it can run any code: trust its author);
        `FormatError` naming the URI when the bytes are not a pickle."""
        return decode_pkl(uri, self.load_bytes(uri, channel=channel))
