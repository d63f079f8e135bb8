"""An upload's pieces, as they arrive, gathered into two reused blocks.

aiohttp hands a body over in pieces of whatever size arrived. Joining them into a fresh
4 MiB bytes object per write made a new large allocation for every 4 MiB of every upload;
with the mmap threshold the gRPC server sets (8 MiB), those came from the heap, and a 1 GiB
upload left the node ~28 MiB larger than it started. Two blocks per upload, filled in turn,
keep that flat: one is written while the other fills.
"""

from __future__ import annotations

from typing import AsyncIterable, AsyncIterator, Optional, Union

MIN_BLOCK = 64 << 10


async def blocks_of(
    pieces: AsyncIterable[Union[bytes, bytearray]], size: int, expected: Optional[int] = None
) -> AsyncIterator[memoryview]:
    """Full blocks of `size` bytes (the last may be shorter) holding the pieces in order.

    A yielded block is refilled two blocks later: the caller must be done with it before
    it asks for the block after next (write one while the next fills, as `Node` does).
    `expected`, the declared length, keeps the blocks of a small upload small (never under
    64 KiB: a peer that declares 1 byte and sends more gets no write per byte).
    """
    if expected is not None:
        size = max(MIN_BLOCK, min(size, expected))
    blocks = [bytearray(size)]
    turn = filled = 0
    async for piece in pieces:
        view = memoryview(piece).cast("B")
        while len(view):
            block = blocks[turn]
            take = min(len(view), size - filled)
            block[filled : filled + take] = view[:take]
            filled += take
            view = view[take:]
            if filled == size:
                yield memoryview(block)
                turn, filled = 1 - turn, 0
                if len(blocks) == 1:
                    blocks.append(bytearray(size))
    if filled:
        yield memoryview(blocks[turn])[:filled]
