"""Hash bytes once, as a whole and in manifest chunks, optionally copying them as they pass.

Storing a 1 GiB file must cost little more than copying it, so the whole-file SHA-1, the
chunk SHA-1s and the write each run on their own thread (hashlib and file writes release
the GIL), double-buffered against the next read. Memory stays at two blocks whatever the size.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, List, Optional, Tuple

from .errors import IntegrityError
from .manifest import CHUNK_SIZE, MANIFEST_THRESHOLD, Chunk, Manifest

if TYPE_CHECKING:
    from concurrent.futures import Future

BLOCK_SIZE = 4_000_000
"""Read size: a divisor of CHUNK_SIZE, so blocks never straddle a chunk boundary."""

ReadInto = Callable[[memoryview], int]
"""Fills the buffer with up to len(buffer) bytes and returns the count; 0 at the end."""

WriteAll = Callable[[memoryview], None]
Progress = Callable[[int], None]
"""Called with the number of bytes processed so far."""


@dataclass(frozen=True)
class HashResult:
    sha1: str
    size: int
    manifest: Optional[Manifest]


class _ChunkHasher:
    """Hashes a stream in CHUNK_SIZE pieces; blocks arrive in order and never straddle."""

    def __init__(self) -> None:
        self.chunks: List[Chunk] = []
        self._hash = hashlib.sha1()
        self._start = 0
        self._filled = 0

    def update(self, block: memoryview) -> None:
        while len(block):
            take = min(len(block), CHUNK_SIZE - self._filled)
            self._hash.update(block[:take])
            self._filled += take
            block = block[take:]
            if self._filled == CHUNK_SIZE:
                self._close_chunk()

    def _close_chunk(self) -> None:
        end = self._start + self._filled
        self.chunks.append(Chunk(self._start, end, self._hash.hexdigest()))
        self._hash = hashlib.sha1()
        self._start, self._filled = end, 0

    def finish(self) -> Tuple[Chunk, ...]:
        if self._filled:
            self._close_chunk()
        return tuple(self.chunks)


def hash_stream(
    read_into: ReadInto,
    write: Optional[WriteAll] = None,
    size_hint: Optional[int] = None,
    progress: Optional[Progress] = None,
    manifest: bool = True,
    resume: Optional[Any] = None,
) -> HashResult:
    """Read everything from `read_into`, hashing it (and writing it with `write`).

    `size_hint` is the expected size when known: chunk hashing is skipped for files that
    will not need a manifest. The result carries a `Manifest` when the size is over
    MANIFEST_THRESHOLD, unless `manifest` is False. `resume` is a `hashlib.sha1()` object
    that has already seen the bytes before this stream (a resumed download); it is
    updated in place, and the result's size counts only this stream's bytes.
    """
    whole = resume if resume is not None else hashlib.sha1()
    chunker: Optional[_ChunkHasher] = None
    if manifest and (size_hint is None or size_hint > MANIFEST_THRESHOLD):
        chunker = _ChunkHasher()

    # The three consumers of each block, each on its own worker thread.
    consumers: List[Callable[[memoryview], None]] = [whole.update]
    if chunker is not None:
        consumers.append(chunker.update)
    if write is not None:
        consumers.append(write)

    from concurrent.futures import ThreadPoolExecutor  # only stores and links need threads

    buffers = [bytearray(BLOCK_SIZE), bytearray(BLOCK_SIZE)]
    total = 0
    pending: List[Future[None]] = []
    with ThreadPoolExecutor(max_workers=len(consumers), thread_name_prefix="kachery-hash") as pool:
        turn = 0
        while True:
            view = memoryview(buffers[turn])
            n = fill(read_into, view)
            for future in pending:
                future.result()
            if n == 0:
                break
            block = view[:n]
            total += n
            if n < 65536:
                # Small tail (or small file): threads would cost more than they save.
                for consume in consumers:
                    consume(block)
                pending = []
            else:
                pending = [pool.submit(consume, block) for consume in consumers]
            if progress is not None:
                progress(total)
            turn = 1 - turn
    result_manifest = None
    if manifest and total > MANIFEST_THRESHOLD:
        if chunker is None:
            raise IntegrityError(
                f"read {total} bytes where {size_hint} were expected",
                "the file changed while it was being read; try again once it is complete",
            )
        result_manifest = Manifest(total, whole.hexdigest(), chunker.finish())
    return HashResult(whole.hexdigest(), total, result_manifest)


def fill(read_into: ReadInto, view: memoryview) -> int:
    """Fill `view` completely unless the stream ends (so blocks align with chunks); return
    how many bytes it holds."""
    filled = 0
    while filled < len(view):
        n = read_into(view[filled:])
        if not n:
            break
        filled += n
    return filled


def writer_for(file: BinaryIO) -> WriteAll:
    """A `WriteAll` for an unbuffered file: loops until every byte is written."""

    def write_all(block: memoryview) -> None:
        while len(block):
            n = file.write(block)
            block = block[n:]

    return write_all


def sha1_of_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def sha1_of_file(path: os.PathLike[str] | str) -> str:
    """The SHA-1 of a file's bytes, read in blocks (memory stays flat)."""
    digest = hashlib.sha1()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                return digest.hexdigest()
            digest.update(view[:n])
