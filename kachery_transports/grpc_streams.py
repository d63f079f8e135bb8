"""The streams of the gRPC backend: what gRPC itself leaves to the caller.

A `Watchdog` gives a call a per-message timeout (gRPC has only whole-call deadlines); a
`RequestSender` is the request stream of a store, read by grpc on its own thread; a
`ChunkStream` reads the answer stream of a ranged read as a binary file object.

    >>> watchdog = Watchdog(call, seconds=60.0)      # doctest: +SKIP
    >>> watchdog.arm(); reply = next(call); watchdog.disarm()   # doctest: +SKIP
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any, Iterator, Optional, Tuple

from kachery_core.content.hashing import Progress
from kachery_core.errors import TransportError
from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api.data_chunks import MalformedChunk, decode_data_chunk


class Watchdog:
    """Cancels a call when the node sends nothing for `seconds` while we wait for it.

    gRPC has no per-message timeout, and a whole-call deadline would cut off large
    transfers, so a small thread watches the time since the call was last `arm`ed.
    """

    def __init__(self, call: Any, seconds: float) -> None:
        self._call = call
        self._seconds = seconds
        self._armed_at: Optional[float] = None
        self._done = threading.Event()
        self.fired = False
        threading.Thread(target=self._watch, name="kachery-grpc-watchdog", daemon=True).start()

    def arm(self) -> None:
        self._armed_at = time.monotonic()

    def disarm(self) -> None:
        self._armed_at = None

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self._seconds / 4)):
            armed = self._armed_at
            if armed is not None and time.monotonic() - armed >= self._seconds:
                self.fired = True
                self._call.cancel()
                return


class RequestSender:
    """The request stream of a store: grpc pulls the blocks on its own thread.

    Each pull means the previous block was taken, so it re-arms the watchdog. A local read
    error cancels the call (the node then discards the upload) instead of ending the
    stream, which would make the node store a truncated file.
    """

    def __init__(self, blocks: Iterator[bytes], progress: Optional[Progress]) -> None:
        self._blocks = blocks
        self._progress = progress
        self._started = threading.Event()
        self._future: Any = None
        self._watchdog: Optional[Watchdog] = None
        self._reading = threading.Lock()
        self._closed = False
        self.error: Optional[Exception] = None
        self.sent = 0

    def start(self, future: Any, watchdog: Watchdog) -> None:
        self._future, self._watchdog = future, watchdog
        self._started.set()

    def close(self, wait_seconds: float = 5.0) -> None:
        """Stop reading, waiting for a read in progress on grpc's thread to end.

        That thread is a daemon: were the process to exit while it reads stdin, holding the
        stream's lock, the interpreter would abort at shutdown instead of exiting cleanly.
        """
        if self._reading.acquire(timeout=wait_seconds):
            self._closed = True
            self._reading.release()

    def __iter__(self) -> RequestSender:
        return self

    def __next__(self) -> pb.DataChunk:
        self._started.wait()
        assert self._watchdog is not None
        self._watchdog.arm()
        with self._reading:
            if self._closed:
                raise StopIteration
            try:
                data = next(self._blocks)
            except StopIteration:
                raise
            except Exception as exc:
                self.error = exc
                self._future.cancel()
                raise StopIteration from None
        self.sent += len(data)
        if self._progress is not None:
            self._progress(self.sent)
        return pb.DataChunk(data=data)


def data_chunks(messages: Iterator[bytes], url: str) -> Iterator[Tuple[memoryview, int]]:
    """(data, total_size) of each raw DataChunk message of a bulk stream; the data is a
    view into the message (no copy). The stream is closed when this generator is."""
    try:
        for raw in messages:
            try:
                yield decode_data_chunk(raw)
            except MalformedChunk as exc:
                raise TransportError(f"the node at {url} sent a malformed message: {exc}") from None
    finally:
        messages.close()  # type: ignore[attr-defined]


class ChunkStream(io.RawIOBase):
    """The messages of a ReadRange call, as `data_chunks` yields them, as a binary stream."""

    def __init__(self, chunks: Iterator[Tuple[memoryview, int]], url: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._url = url
        first = next(chunks, None)  # errors (not found, bad range) surface on open
        if first is None:
            raise TransportError(f"the node at {url} ended a read without any answer")
        self._view, self._total = first
        self._got = len(self._view)
        self._check_size()

    def _check_size(self) -> None:
        if self._got > self._total:
            raise TransportError(
                f"the node at {self._url} sent more than the {self._total} bytes it announced"
            )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not len(self._view):
            chunk = next(self._chunks, None)
            if chunk is None:
                if self._got != self._total:
                    raise TransportError(
                        f"the node at {self._url} sent {self._got} of {self._total} bytes",
                        "try again",
                    )
                return 0
            self._view = chunk[0]
            self._got += len(self._view)
            self._check_size()
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def readall(self) -> bytes:
        parts = [bytes(self._view)]
        self._view = memoryview(b"")
        while True:
            block = self.read(1 << 20)
            if not block:
                return b"".join(parts)
            parts.append(block)

    def close(self) -> None:
        if not self.closed:
            self._chunks.close()  # type: ignore[attr-defined]
        super().close()
