"""`UploadBody`: a file sent as a request body in reused 1 MiB blocks, whatever size the
sender asks for, each block handed over whole before the next is read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

from kachery_transports.http_client import UPLOAD_BLOCK, UploadBody


def test_blocks_are_the_file_in_order_and_progress_counts_them(tmp_path: Path) -> None:
    data = os.urandom(2 * UPLOAD_BLOCK + 12_345)
    source = tmp_path / "f.bin"
    source.write_bytes(data)
    reported: List[int] = []
    body = UploadBody(open(source, "rb"), reported.append)  # noqa: SIM115
    sent = bytearray()
    sizes = []
    while True:
        block = body.read(16384)  # what urllib3 asks for
        if not block:
            break
        sizes.append(len(block))
        sent += block  # copied out before the next read reuses the buffer
    body.close()
    assert bytes(sent) == data
    assert sizes == [UPLOAD_BLOCK, UPLOAD_BLOCK, 12_345]
    assert reported == [UPLOAD_BLOCK, 2 * UPLOAD_BLOCK, len(data)]
    assert body.sent == len(data)


def test_an_empty_file_sends_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    reported: List[int] = []
    body = UploadBody(open(tmp_path / "empty", "rb"), reported.append)  # noqa: SIM115
    assert not body.read(16384)
    body.close()
    assert reported == [] and body.sent == 0
