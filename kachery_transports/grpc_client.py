"""Calls to a node's gRPC API: the plumbing under the `grpc` backend.

`NodeGrpc` opens the channel, probes the node once (and has it prove its ID), and makes
the three kinds of call the backend needs (a single answer, an answer stream, a request
stream), each with the session's credential and retried once when a rotated code is
refused. A failed call becomes the `KacheryError` its error type names (trailing metadata
`kachery-error-type`), or, from a node that sends none, the one its status code stands for.

    >>> grpc_node = NodeGrpc("127.0.0.1:14508", session, 10.0, 60.0, "start one")   # doctest: +SKIP
    >>> grpc_node.call("GetMutable", pb.MutableKey(key_json='"k"'), "mutable get")   # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Optional, Tuple

import grpc

from kachery_core.content.hashing import Progress
from kachery_core.errors import InvalidInputError, KacheryError, NotFoundError, TransportError
from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc
from kachery_core.grpc_api.tuning import CLIENT_CHANNEL_OPTIONS
from kachery_core.protocol.wire import AUTH_METADATA, ERROR_TYPE_METADATA, one_line

from .grpc_streams import RequestSender, Watchdog
from .node_session import NodeSession

_REFUSED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
_BAD_INPUT = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
)


class NodeGrpc:
    """One node's gRPC API at `address`, reached with the rules of `session`.

    `read_timeout` is how long the node may send nothing before a call is given up;
    `no_node_hint` is what to do when nothing answers the probe.
    """

    def __init__(
        self,
        address: str,
        session: NodeSession,
        connect_timeout: float,
        read_timeout: float,
        no_node_hint: str,
    ) -> None:
        self.address = address
        self.session = session
        self.url = session.url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._no_node_hint = no_node_hint
        self._channel: Any = None
        self._stub: Any = None
        self._probe: Optional[pb.ProbeReply] = None
        self._connecting = threading.Lock()

    # -- connecting ----------------------------------------------------------------------

    def connect(self) -> pb.ProbeReply:
        """Probe once: is a node there, and is it the expected one?"""
        if self._probe is not None:
            return self._probe
        with self._connecting:  # one channel and one probe for all of a batch's threads
            if self._probe is not None:
                return self._probe
            if self._channel is None:
                self._channel = grpc.insecure_channel(self.address, options=CLIENT_CHANNEL_OPTIONS)
                self._stub = pb_grpc.KacheryStub(self._channel)
            answer = self._probe_call(pb.ProbeRequest())
            self.session.check_identity(
                answer.node_id,
                lambda nonce: self._probe_call(pb.ProbeRequest(nonce=nonce)).signature,
            )
            self._probe = answer
            return answer

    def _probe_call(self, request: pb.ProbeRequest) -> pb.ProbeReply:
        try:
            return self._stub.Probe(request, timeout=self.connect_timeout)
        except grpc.RpcError as exc:
            code = _code(exc)
            if code == grpc.StatusCode.UNAVAILABLE:
                raise TransportError(
                    f"no kachery node answers at {self.url}", self._no_node_hint
                ) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TransportError(
                    f"the node at {self.url} did not answer within {self.connect_timeout:g} s",
                    "is it running and reachable? (KACHERY_CONNECT_TIMEOUT sets the wait)",
                ) from None
            raise self.error(exc, "the probe") from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None
            self._probe = None

    # -- calls ---------------------------------------------------------------------------

    def call(self, method: str, request: Any, what: str, timeout: Optional[float] = None) -> Any:
        """One call with a single answer, which must come within `timeout` (`read_timeout`)."""
        self.connect()
        rpc = getattr(self._stub, method)

        def attempt(credential: str) -> Any:
            try:
                return rpc(
                    request, metadata=_metadata(credential), timeout=timeout or self.read_timeout
                )
            except grpc.RpcError as exc:
                raise self.error(exc, what) from None

        return self.session.with_credential(attempt)

    def receive(
        self, method: str, request: Any, what: str, subject: str = "", raw: bool = False
    ) -> Iterator[Any]:
        """The messages of an answer stream, each within `read_timeout` of asking for it.

        A refusal can only come before the first message, so only opening is retried.
        `raw` gives each message as the bytes grpc received, not parsed (a bulk stream
        parses its DataChunks itself, see `grpc_api.data_chunks`).
        """
        self.connect()
        rpc = self._raw_answers(method, request) if raw else getattr(self._stub, method)

        def open_stream(credential: str) -> Tuple[Any, Watchdog, Optional[Any]]:
            call = rpc(request, metadata=_metadata(credential))
            watchdog = Watchdog(call, self.read_timeout)
            try:
                return call, watchdog, _next_message(call, watchdog)
            except BaseException as exc:
                watchdog.stop()
                call.cancel()
                if isinstance(exc, grpc.RpcError):
                    raise self.error(exc, what, watchdog.fired, subject) from None
                raise

        call, watchdog, message = self.session.with_credential(open_stream)
        try:
            while message is not None:
                yield message
                message = _next_message(call, watchdog)
        except grpc.RpcError as exc:
            raise self.error(exc, what, watchdog.fired, subject) from None
        finally:
            watchdog.stop()
            call.cancel()  # nothing once finished; ends the stream if abandoned early

    def _raw_answers(self, method: str, request: Any) -> Any:
        """The answer-stream `method` of the Kachery service, its answers left as bytes."""
        service = pb.DESCRIPTOR.services_by_name["Kachery"].full_name
        return self._channel.unary_stream(
            f"/{service}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=None,
        )

    def send(
        self,
        method: str,
        blocks: Callable[[], Iterator[bytes]],
        replayable: bool,
        progress: Optional[Progress],
        what: str,
    ) -> Any:
        """A request stream of `blocks()` (made again for a retry), and the single answer."""
        self.connect()

        def attempt(credential: str) -> Any:
            sender = RequestSender(blocks(), progress)
            future = getattr(self._stub, method).future(sender, metadata=_metadata(credential))
            watchdog = Watchdog(future, self.read_timeout)
            watchdog.arm()
            sender.start(future, watchdog)
            try:
                return future.result()
            except (grpc.RpcError, grpc.FutureCancelledError) as exc:
                if sender.error is not None:
                    raise sender.error from None  # a local read error, as store-file shows it
                raise self.error(exc, what, watchdog.fired) from None
            finally:
                watchdog.stop()
                sender.close()

        return self.session.with_credential(attempt, replayable)

    # -- errors --------------------------------------------------------------------------

    def error(
        self, exc: Exception, what: str, stalled: bool = False, subject: str = ""
    ) -> KacheryError:
        """The kachery error for a failed call, as the other backends raise it."""
        code = _code(exc)
        details = (
            one_line(exc.details() or code.name, 500) if hasattr(exc, "details") else code.name
        )
        if stalled:
            return TransportError(
                f"the node at {self.url} sent nothing for {self.read_timeout:g} s during {what}",
                "is it overloaded or stuck? nothing partial was kept; try again "
                "(KACHERY_READ_TIMEOUT sets the wait)",
            )

        def by_status() -> KacheryError:
            if code == grpc.StatusCode.NOT_FOUND:
                if subject:
                    return NotFoundError(
                        f"{subject} not found by the node at {self.url}: {details}"
                    )
                return NotFoundError(details)
            if code in _BAD_INPUT:
                return InvalidInputError(details)
            if code in _REFUSED:
                return self.session.refused(details)
            if code == grpc.StatusCode.UNAVAILABLE:
                return TransportError(
                    f"lost the node at {self.url} during {what}",
                    "is it still running? nothing partial was kept; try again",
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return TransportError(f"the node at {self.url} did not answer {what} in time")
            return TransportError(
                f"the node at {self.url} failed during {what} ({code.name}): {details}"
            )

        return self.session.node_error(_error_type(exc), details, by_status, subject)


def _metadata(credential: str) -> Tuple[Tuple[str, str], ...]:
    return ((AUTH_METADATA, credential),)


def _next_message(call: Any, watchdog: Watchdog) -> Optional[Any]:
    """The next message of an answer stream (None at its end), watched for a stall."""
    watchdog.arm()
    try:
        return next(call)
    except StopIteration:
        return None
    finally:
        watchdog.disarm()  # the consumer's own pace never counts as a stall


def _code(exc: Exception) -> Any:
    if isinstance(exc, grpc.FutureCancelledError):
        return grpc.StatusCode.CANCELLED
    code = getattr(exc, "code", None)
    return code() if callable(code) else grpc.StatusCode.UNKNOWN


def _error_type(exc: Exception) -> Optional[str]:
    """The error type the node sent as trailing metadata of a failed call, if any."""
    trailing = getattr(exc, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        pairs = trailing() or ()
    except Exception:
        return None
    for key, value in pairs:
        if key == ERROR_TYPE_METADATA:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
