"""How a node's host and port are written in an address: one rule for every client and the node.

An IPv6 address holds colons, so in a URL or a `host:port` address it goes in brackets
(RFC 3986 section 3.2.2); names and IPv4 addresses go as they are.

    >>> host_port("::1", 4001)
    '[::1]:4001'
    >>> host_port("127.0.0.1", 4001)
    '127.0.0.1:4001'
"""

from __future__ import annotations


def url_host(host: str) -> str:
    """`host` as it appears in a URL or an address (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets (what gRPC and URLs expect)."""
    return f"{url_host(host)}:{port}"
