"""`upload_blocks.blocks_of`: an upload's pieces, whatever their sizes, come out as the
same bytes in full blocks, and a block is refilled only two blocks after it was handed out."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, List, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from kachery_daemon.upload_blocks import MIN_BLOCK, blocks_of


async def _pieces(parts: List[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _collect(parts: List[bytes], size: int, expected: Optional[int]) -> List[bytes]:
    """Each block copied when it is handed out, and checked unchanged until the block after
    next is asked for (the contract `Node._store_upload` relies on while it writes)."""

    async def run() -> List[bytes]:
        out: List[bytes] = []
        held: List[memoryview] = []
        async for block in blocks_of(_pieces(parts), size, expected):
            if len(held) == 2:
                held.pop(0)
            for view, copy in zip(held, out[-len(held) :] if held else []):
                assert bytes(view) == copy  # the previous block is not touched yet
            out.append(bytes(block))
            held.append(block)
        return out

    return asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=300_000), max_size=12),
    size=st.integers(min_value=1, max_value=200_000),
)
def test_blocks_hold_the_pieces_in_order_and_all_but_the_last_are_full(
    parts: List[bytes], size: int
) -> None:
    blocks = _collect(parts, size, None)
    assert b"".join(blocks) == b"".join(parts)
    assert all(len(block) == size for block in blocks[:-1])
    assert all(0 < len(block) <= size for block in blocks)


def test_a_declared_length_keeps_small_uploads_small_but_never_under_min_block() -> None:
    data = bytes(range(256)) * 1000  # 256,000 bytes
    blocks = _collect([data], 4 << 20, len(data))
    assert [len(b) for b in blocks] == [len(data)]
    # a peer that declares 1 byte and sends more gets blocks of MIN_BLOCK, not of 1 byte
    blocks = _collect([data], 4 << 20, 1)
    assert b"".join(blocks) == data
    assert [len(b) for b in blocks[:-1]] == [MIN_BLOCK] * (len(data) // MIN_BLOCK)


def test_an_empty_upload_gives_no_block() -> None:
    assert _collect([], 1 << 20, None) == []
    assert _collect([b"", b""], 1 << 20, 0) == []
