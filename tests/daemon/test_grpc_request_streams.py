"""The node reads each call's request stream to its end, on every grpcio it runs on.

The node takes every call as a request stream (so that a missing message is timed out,
see test_attack_grpc). grpcio 1.70, the last for Python 3.8, frees a call's HTTP/2 stream
only once that stream is read to its end: a node that read just the one message refused
every call on a connection after MAX_CONCURRENT_STREAMS of them had ended.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Iterator

import grpc
import requests
from test_attack_grpc import start_grpc_node

from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc
from kachery_core.protocol.wire import AUTH_METADATA
from kachery_daemon.grpc_limits import MAX_CONCURRENT_STREAMS

DATA = b"one small object, loaded many times over one connection\n"


def test_one_connection_serves_more_calls_than_its_stream_cap(make_node) -> None:
    node = start_grpc_node(make_node)
    stored = requests.post(node.url + "/store", data=DATA, headers=node.headers(), timeout=30)
    assert stored.status_code == 200, stored.text
    sha1 = hashlib.sha1(DATA).hexdigest()
    channel = grpc.insecure_channel(f"127.0.0.1:{node.grpc_port}")  # type: ignore[attr-defined]
    auth = ((AUTH_METADATA, node.auth_code()),)
    try:
        stub = pb_grpc.KacheryStub(channel)
        calls = 3 * MAX_CONCURRENT_STREAMS
        for i in range(calls):  # one after another: at most one stream open at a time
            answers = list(stub.Load(pb.FileKey(sha1=sha1), metadata=auth, timeout=30))
            assert b"".join(a.data for a in answers) == DATA, i
            assert stub.Probe(pb.ProbeRequest(), metadata=auth, timeout=30).node_id, i
            missing = stub.Load(pb.FileKey(sha1="0" * 40), metadata=auth, timeout=30)
            try:
                list(missing)
                raise AssertionError("a missing object was loaded")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, (i, exc)
    finally:
        channel.close()


def test_a_second_request_message_is_refused(make_node) -> None:
    node = start_grpc_node(make_node)
    channel = grpc.insecure_channel(f"127.0.0.1:{node.grpc_port}")  # type: ignore[attr-defined]
    auth = ((AUTH_METADATA, node.auth_code()),)
    two = [pb.ProbeRequest().SerializeToString()] * 2
    try:
        probe = channel.stream_unary("/kachery.v1.Kachery/Probe")
        try:
            probe(iter(two), metadata=auth, timeout=30)
            raise AssertionError("a Probe of two messages was answered")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
            assert exc.details() == "the call had more than one request message", exc
    finally:
        channel.close()


def test_a_request_stream_that_never_ends_is_ended(make_node) -> None:
    """One message, then neither another nor the end of the stream: timed out as a missing
    message is, so that a client cannot hold a stream open this way either."""
    node = start_grpc_node(make_node, "--body-idle-timeout", "2")
    channel = grpc.insecure_channel(f"127.0.0.1:{node.grpc_port}")  # type: ignore[attr-defined]
    released = threading.Event()

    def one_then_silence() -> Iterator[bytes]:
        yield pb.ProbeRequest().SerializeToString()
        released.wait(60)

    auth = ((AUTH_METADATA, node.auth_code()),)
    try:
        call = channel.stream_unary("/kachery.v1.Kachery/Probe").future(
            one_then_silence(), metadata=auth
        )
        started = time.monotonic()
        error = call.exception(timeout=20)
        assert isinstance(error, grpc.RpcError), "the call was still open"
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
        assert error.details() == "the end of the request stalled: no message for 2 s", error
        assert time.monotonic() - started < 15
    finally:
        released.set()
        channel.close()
