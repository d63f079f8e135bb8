"""The bulk gRPC streams (Load, ReadRange): DataChunks made and read by hand stay protobuf,
and a node that sends more than it announced is cut off before anything is written."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from conftest import free_port

from kachery_core.content.uri import parse_uri
from kachery_core.errors import TransportError
from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc
from kachery_core.grpc_api.data_chunks import (
    MalformedChunk,
    decode_data_chunk,
    encode_data_chunk,
)
from kachery_core.settings.config import resolve_config
from kachery_transports.grpc import GrpcDaemonTransport


@pytest.mark.parametrize(
    "data, total",
    [(b"", 0), (b"x", 0), (b"abc", 3), (bytes(range(256)) * 5000, 1 << 40), (b"z", 127)],
)
def test_hand_made_chunks_are_protobuf_both_ways(data: bytes, total: int) -> None:
    ours = encode_data_chunk(data, total)
    parsed = pb.DataChunk.FromString(ours)
    assert (parsed.data, parsed.total_size) == (data, total)
    theirs = pb.DataChunk(data=data, total_size=total).SerializeToString()
    view, size = decode_data_chunk(theirs)
    assert (bytes(view), size) == (data, total)


def test_decoding_skips_unknown_fields_and_reads_negative_sizes() -> None:
    # field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32, then the data
    unknown = b"\x48\x05" + b"\x51" + bytes(8) + b"\x5a\x02hi" + b"\x65" + bytes(4)
    raw = unknown + pb.DataChunk(data=b"data", total_size=-1).SerializeToString()
    view, size = decode_data_chunk(raw)
    assert (bytes(view), size) == (b"data", -1)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x05abc",  # data longer than the message
        b"\x0a",  # length missing
        b"\x10" + b"\xff" * 11,  # an endless varint
        b"\x0b",  # a group (wire type 3)
        b"\x02\x00",  # field number 0
        b"\x51\x00",  # fixed64 cut short
    ],
)
def test_malformed_chunks_are_refused(raw: bytes) -> None:
    with pytest.raises(MalformedChunk):
        decode_data_chunk(raw)


class _OverlongNode(pb_grpc.KacheryServicer):  # type: ignore[misc]
    """Answers the probe, then a Load announcing 10 bytes and sending 10 MiB."""

    def __init__(self) -> None:
        self.sent_after_limit = 0

    def Probe(self, request: Any, context: Any) -> pb.ProbeReply:
        return pb.ProbeReply(node_id="hostile", daemon_version="0", storage_dir="/nowhere")

    def Load(self, request: Any, context: Any) -> Iterator[pb.DataChunk]:
        yield pb.DataChunk(data=b"0123456789", total_size=10)
        for _ in range(10):
            self.sent_after_limit += 1
            yield pb.DataChunk(data=bytes(1 << 20))


def test_a_node_sending_more_than_it_announced_is_cut_off(tmp_path: Path) -> None:
    port = free_port()
    server = grpc.server(ThreadPoolExecutor(2))
    hostile = _OverlongNode()
    pb_grpc.add_KacheryServicer_to_server(hostile, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    cache = tmp_path / "cache"
    config = resolve_config(
        {
            "transport": "grpc",
            "daemon_host": "127.0.0.1",
            "grpc_port": port,
            "storage_dir": str(cache),
            "auth_token": "kt_any_token_at_all",
        }
    )
    transport = GrpcDaemonTransport.from_config(config)
    try:
        uri = parse_uri("sha1://" + "ab" * 20)
        with pytest.raises(TransportError, match="sent more than the 10 bytes"):
            transport.load_file(uri)
        assert not [p for p in cache.rglob("*") if p.is_file()]  # no object, no staging file
    finally:
        transport.close()
        server.stop(None)
