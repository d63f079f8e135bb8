"""`DataChunk` messages read and made by hand, for the bulk streams (Load, ReadRange).

A gigabyte travels as hundreds of multi-megabyte `DataChunk`s. Through the protobuf
classes each message's bytes are copied twice more on each side (parsed into the message,
then copied out of `.data`; copied in, then serialized). Here the data of a received
message is a view into the bytes grpc delivered, and a sent message is its header and
data joined once. The encoding is the protobuf one (`data` = field 1, `total_size` =
field 2), so either side may be an older peer that uses the generated classes.

    >>> raw = encode_data_chunk(b"abc", 3)
    >>> data, total = decode_data_chunk(raw)
    >>> bytes(data), total
    (b'abc', 3)
"""

from __future__ import annotations

from typing import Tuple

_DATA_TAG = (1 << 3) | 2  # field 1, length-delimited
_TOTAL_TAG = (2 << 3) | 0  # field 2, varint
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class MalformedChunk(ValueError):
    """The bytes are not a DataChunk message."""


def encode_data_chunk(data: bytes, total_size: int = 0) -> bytes:
    """The serialized `DataChunk(data=data, total_size=total_size)` (fields in any order
    are valid protobuf; `total_size` first keeps the data at the end)."""
    header = bytearray()
    if total_size:
        header.append(_TOTAL_TAG)
        header += _varint(total_size)
    if data:
        header.append(_DATA_TAG)
        header += _varint(len(data))
    return b"".join((header, data))


def decode_data_chunk(raw: bytes) -> Tuple[memoryview, int]:
    """(data, total_size) of a serialized DataChunk; `data` is a view into `raw`.

    Unknown fields are skipped, as protobuf does; a repeated field keeps its last value.
    """
    view = memoryview(raw)
    data = view[:0]
    total = 0
    position, end = 0, len(view)
    while position < end:
        tag, position = _read_varint(view, position)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            value, position = _read_varint(view, position)
            if field == 2:
                total = value - (1 << 64) if value >= 1 << 63 else value  # int64
        elif wire_type == _LENGTH:
            length, position = _read_varint(view, position)
            if length > end - position:
                raise MalformedChunk("a field runs past the end of the message")
            if field == 1:
                data = view[position : position + length]
            position += length
        elif wire_type in (_FIXED64, _FIXED32):
            position += 8 if wire_type == _FIXED64 else 4
            if position > end:
                raise MalformedChunk("a field runs past the end of the message")
        else:
            raise MalformedChunk(f"unsupported wire type {wire_type}")
        if field == 0:
            raise MalformedChunk("field number 0")
    return data, total


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(view: memoryview, position: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(view) or shift > 63:
            raise MalformedChunk("a truncated or overlong varint")
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
