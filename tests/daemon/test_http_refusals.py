"""Malformed HTTP on a real node: only spaces and tabs are optional whitespace in the
empty-upload special case (empty_upload.py), and each refused request is one log line,
rate limited, never a traceback (http_log.py)."""

from __future__ import annotations

import time

from raw_http import exchange

from kachery_daemon.http_log import BURST, WINDOW


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def empty_upload(node, transfer_encoding: bytes) -> bytes:
    head = (
        b"POST /store HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"KACHERY-CLIENT-AUTH-CODE: " + node.auth_code().encode() + b"\r\n"
        b"Content-Length: 0\r\n" + transfer_encoding + b"\r\n\r\n0\r\n\r\n"
    )
    return exchange(node.port, head, reset_ends=True)


def test_only_spaces_and_tabs_surround_the_empty_uploads_header_values(node) -> None:
    for allowed in (b"Transfer-Encoding: chunked", b"Transfer-Encoding:\t chunked \t"):
        answer = empty_upload(node, allowed)
        assert status(answer) == 200, (allowed, answer[:200])
    for refused in (
        b"Transfer-Encoding:\x0bchunked",
        b"Transfer-Encoding:\x0cchunked",
        b"Transfer-Encoding: chunked\x0b",
        b"Transfer-Encoding: chunked\x0c",
    ):
        answer = empty_upload(node, refused)
        assert status(answer) == 400, (refused, answer[:200])


def test_each_malformed_request_is_one_rate_limited_log_line(node) -> None:
    before = node.log.read_text()
    bad = [
        b"GET /probe HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",  # a control character
        b"GET /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /probe HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
        b"GET /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ]
    sent, started = 0, time.monotonic()
    for _ in range(5):
        for raw in bad:
            answer = exchange(node.port, raw, reset_ends=True)
            assert status(answer) == 400, (raw, answer[:200])
            sent += 1
    assert sent == 20
    one_window = time.monotonic() - started < WINDOW  # else a second window may log more
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = node.log.read_text()[len(before) :]
        lines = [line for line in logged.splitlines() if "malformed HTTP request" in line]
        if len(lines) >= BURST:
            break
        time.sleep(0.2)
    assert "Traceback" not in logged, logged[:2000]
    assert (len(lines) == BURST) if one_window else (BURST <= len(lines) < sent), logged[:2000]
    assert all(
        line.startswith("kachery-daemon: refused") and "127.0.0.1" in line for line in lines
    ), lines
    assert len(logged.splitlines()) == len(lines), logged[:2000]  # and nothing else
    assert node.probe() is not None
