"""Raw bytes to a node on a fresh connection, for requests no HTTP client would send."""

from __future__ import annotations

import socket


def exchange(port: int, raw: bytes, timeout: float = 10.0, reset_ends: bool = False) -> bytes:
    """Send `raw` on a fresh connection and read until the node closes it (or `timeout`).

    `reset_ends`: a connection reset also ends the answer (a node that refuses a request
    may close without reading the rest of it, which the kernel answers with a reset).
    """
    ends = (socket.timeout, ConnectionResetError) if reset_ends else (socket.timeout,)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        received = b""
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                received += piece
        except ends:
            pass
    return received
