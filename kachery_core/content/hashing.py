"""Hash bytes once, as a whole and in manifest chunks, optionally copying them as they pass.

Storing a 1 GiB file must cost little more than hashing it. Two ways get there:

- `hash_file_copy` (regular files, Linux): the kernel copies the source into the staging
  file (`copy_file_range`, no trip through user space) while two threads hash *the staging
  file* through small `mmap` windows, following the copy. The hash is of exactly the
  bytes stored, and only our own private staging file is ever mapped (a user's file that
  shrinks under a mapping would kill the process with SIGBUS).
- `hash_stream` (anything readable): the whole-file SHA-1, the chunk SHA-1s and the write
  each run on their own thread (hashlib and file writes release the GIL), double-buffered
  against the next read. An input that fits in one block is done inline, without threads.

Memory stays flat either way: two read blocks, or two mapped windows, whatever the size.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, List, Optional, Tuple

from kachery_core.content.manifest import CHUNK_SIZE, MANIFEST_THRESHOLD, Chunk, Manifest
from kachery_core.errors import IntegrityError
from kachery_core.progress import Progress
from kachery_core.records import dataclass

if TYPE_CHECKING:
    from concurrent.futures import Future

BLOCK_SIZE = 4_000_000
"""Read size: a divisor of CHUNK_SIZE, so blocks never straddle a chunk boundary."""

COPY_STEP = 8 << 20
"""Bytes per kernel copy call: the hashers follow the copy in steps this big."""

HASH_WINDOW = 8 << 20
"""Bytes of the staging file each hasher maps at a time: mapped pages count as resident
memory while mapped, so the window bounds the peak RSS (two hashers, two windows)."""

_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", -1)}
)
"""Errors meaning "the kernel cannot copy between these two files": use read and write."""

ReadInto = Callable[[memoryview], int]
"""Fills the buffer with up to len(buffer) bytes and returns the count; 0 at the end."""

WriteAll = Callable[[memoryview], None]


@dataclass(frozen=True)
class HashResult:
    sha1: str
    size: int
    manifest: Optional[Manifest]


class _ChunkHasher:
    """Hashes a stream in CHUNK_SIZE pieces; blocks arrive in order and never straddle."""

    def __init__(self) -> None:
        import hashlib

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
        import hashlib

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
    import hashlib

    whole = resume if resume is not None else hashlib.sha1()
    chunker: Optional[_ChunkHasher] = None
    if manifest and (size_hint is None or size_hint > MANIFEST_THRESHOLD):
        chunker = _ChunkHasher()

    # The consumers of each block: each gets its own worker thread when there are several blocks.
    consumers: List[Callable[[memoryview], None]] = [whole.update]
    if chunker is not None:
        consumers.append(chunker.update)
    if write is not None:
        consumers.append(write)

    first = memoryview(bytearray(_first_block_size(size_hint)))
    n = fill(read_into, first)
    if n < len(first):
        # Everything fits in one block (a small file): threads would cost more than they save.
        block = first[:n]
        for consume in consumers:
            consume(block)
        total = n
        if progress is not None and n:
            progress(total)
    else:
        total = _consume_on_threads(read_into, consumers, first, progress)
    result_manifest = None
    if manifest and total > MANIFEST_THRESHOLD:
        if chunker is None:
            raise IntegrityError(
                f"read {total} bytes where {size_hint} were expected",
                "the file changed while it was being read; try again once it is complete",
            )
        result_manifest = Manifest(total, whole.hexdigest(), chunker.finish())
    return HashResult(whole.hexdigest(), total, result_manifest)


def hash_file_copy(
    source: int,
    target: int,
    size: int,
    progress: Optional[Progress] = None,
    manifest: bool = True,
) -> Optional[HashResult]:
    """Copy the first `size` bytes of file `source` into the empty file `target` in the
    kernel, hashing what lands in `target` (both open file descriptors; `target` must be
    readable and private to this process: it is mapped).

    Returns None, with `target` empty again, when the kernel cannot copy between these
    files (other filesystems, other platforms): the caller then uses `hash_stream`. A
    source that ends early (it shrank) gives a result shorter than `size`; the caller
    refuses it. The file positions of both descriptors are left as they were.
    """
    copy = _kernel_copier()
    if copy is None:
        return None
    os.ftruncate(target, size)  # mapped pages past the end would raise SIGBUS; none are
    try:
        copied = copy(source, target, 0, min(COPY_STEP, size)) if size else 0
    except _KernelCopyUnavailable:
        os.ftruncate(target, 0)
        return None
    import hashlib

    whole = hashlib.sha1()
    chunker = _ChunkHasher() if manifest and size > MANIFEST_THRESHOLD else None
    consumers: List[Callable[[memoryview], None]] = [whole.update]
    if chunker is not None:
        consumers.append(chunker.update)
    state = _CopyState(len(consumers))
    state.advance(copied)
    hashers = [
        threading.Thread(
            target=state.run_hasher, args=(target, i, consume), name="kachery-hash", daemon=True
        )
        for i, consume in enumerate(consumers)
    ]
    for hasher in hashers:
        hasher.start()
    try:
        while copied and state.copied < size:
            copied = copy(source, target, state.copied, min(COPY_STEP, size - state.copied))
            state.advance(copied)  # 0: the source ended early; the hashers stop there
            state.raise_failure()
            if progress is not None:
                progress(state.hashed())
        state.finish()
        hashing = True
        while hashing:
            hashing = state.wait_for_hashers(0.1)
            if progress is not None:
                progress(state.hashed())  # the last call reports everything hashed
    except _KernelCopyUnavailable:
        state.abort()
        for hasher in hashers:
            hasher.join()
        os.ftruncate(target, 0)
        return None
    except BaseException:
        state.abort()
        for hasher in hashers:
            hasher.join()
        raise
    for hasher in hashers:
        hasher.join()
    state.raise_failure()
    total = state.copied
    result_manifest = None
    if chunker is not None and total > MANIFEST_THRESHOLD:
        result_manifest = Manifest(total, whole.hexdigest(), chunker.finish())
    return HashResult(whole.hexdigest(), total, result_manifest)


class _KernelCopyUnavailable(Exception):
    """The kernel refused to copy between these two files (see `_NO_KERNEL_COPY`)."""


KernelCopy = Callable[[int, int, int, int], int]
"""(source fd, target fd, offset, count) -> bytes copied at that offset; 0 at the end."""


def _kernel_copier() -> Optional[KernelCopy]:
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is None:
        return None

    def copy(source: int, target: int, offset: int, count: int) -> int:
        try:
            return int(copy_file_range(source, target, count, offset, offset))
        except OSError as exc:
            if exc.errno in _NO_KERNEL_COPY:
                raise _KernelCopyUnavailable() from exc
            raise

    return copy


class _CopyState:
    """How far the kernel copy has got and how far each hasher has followed it.

    The copier advances `copied`; each hasher maps and hashes the staging file up to it in
    `HASH_WINDOW` pieces, never past it, so it only ever reads bytes the copy has written.
    """

    def __init__(self, hashers: int) -> None:
        self._changed = threading.Condition()
        self.copied = 0
        self._done = False
        self._aborted = False
        self._hashed = [0] * hashers
        self._running = hashers
        self._failure: Optional[BaseException] = None

    def advance(self, count: int) -> None:
        with self._changed:
            self.copied += count
            self._changed.notify_all()

    def finish(self) -> None:
        """The copy will go no further (complete, or the source ended early)."""
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def abort(self) -> None:
        with self._changed:
            self._done = self._aborted = True
            self._changed.notify_all()

    def hashed(self) -> int:
        """Bytes every hasher has seen: the progress of the whole store."""
        with self._changed:
            return min(self._hashed)

    def wait_for_hashers(self, timeout: float) -> bool:
        """Wait for a hasher to move on (or `timeout`); False once all have ended."""
        with self._changed:
            if self._running:
                self._changed.wait(timeout)
            return self._running > 0

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _copied_beyond(self, position: int) -> int:
        """Wait until the copy passes `position` (or stops); return how far it got."""
        with self._changed:
            while self.copied <= position and not self._done:
                self._changed.wait()
            return position if self._aborted else self.copied

    def run_hasher(self, fd: int, index: int, consume: Callable[[memoryview], None]) -> None:
        position = 0
        try:
            while True:
                end = self._copied_beyond(position)
                if end <= position:
                    return
                while position < end:
                    stop = min(end, position + HASH_WINDOW)
                    consume_mapped(fd, position, stop, consume)
                    position = stop
                    with self._changed:
                        self._hashed[index] = position
                        self._changed.notify_all()
        except BaseException as exc:  # handed to the copying thread, which raises it
            self._failure = exc
            self.abort()
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


def consume_mapped(fd: int, start: int, stop: int, consume: Callable[[memoryview], None]) -> None:
    """Hand bytes [start, stop) of file `fd` to `consume` through a read-only mapping,
    unmapped at once (mapped pages count as this process's resident memory)."""
    import mmap

    base = start - start % mmap.ALLOCATIONGRANULARITY
    mapped = mmap.mmap(fd, stop - base, access=mmap.ACCESS_READ, offset=base)
    try:
        with memoryview(mapped) as view:
            consume(view[start - base :])
    finally:
        mapped.close()


def _first_block_size(size_hint: Optional[int]) -> int:
    """One byte more than a small input's expected size, so one read shows it has ended."""
    return BLOCK_SIZE if size_hint is None else max(1, min(BLOCK_SIZE, size_hint + 1))


def _consume_on_threads(
    read_into: ReadInto,
    consumers: List[Callable[[memoryview], None]],
    first: memoryview,
    progress: Optional[Progress],
) -> int:
    """Hand each block to every consumer on a worker thread while the next block is read;
    `first` is already filled. Returns the number of bytes consumed."""
    from concurrent.futures import ThreadPoolExecutor  # only inputs over one block need threads

    fresh = memoryview(bytearray(BLOCK_SIZE))
    buffers = [first if len(first) == BLOCK_SIZE else memoryview(bytearray(BLOCK_SIZE)), fresh]
    block, total, turn = first, 0, 0
    pending: List[Future[None]] = []
    with ThreadPoolExecutor(max_workers=len(consumers), thread_name_prefix="kachery-hash") as pool:
        while len(block):
            total += len(block)
            if len(block) < 65536:
                # Small tail: threads would cost more than they save.
                for consume in consumers:
                    consume(block)
                pending = []
            else:
                pending = [pool.submit(consume, block) for consume in consumers]
            if progress is not None:
                progress(total)
            turn = 1 - turn
            view = buffers[turn]
            n = fill(read_into, view)
            for future in pending:
                future.result()
            block = view[:n]
    return total


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
    import hashlib

    return hashlib.sha1(data).hexdigest()


def sha1_of_file(path: os.PathLike[str] | str) -> str:
    """The SHA-1 of a file's bytes, read in blocks (memory stays flat)."""
    import hashlib

    digest = hashlib.sha1()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                return digest.hexdigest()
            digest.update(view[:n])
