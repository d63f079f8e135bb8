"""Running a node: take the storage directory's lock, serve, and shut down cleanly.

Connections are limited (`connection_guard.ServerLimits`: header, body and keep-alive
timeouts, a cap on open connections; the gRPC port the same, with its own cap that leaves
HTTP room, see grpc_limits), accept failures for lack of descriptors are logged once per
burst (accept_errors), and the node's files are private (see node_files).

On SIGTERM or SIGINT the node stops accepting connections, gives requests in flight up to
`shutdown_grace_seconds` (default 10) to finish, then cancels the rest. A cancelled upload's staging
file is removed, so no partial object ever appears; a node killed outright leaves only
its staging files, which the next store removes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from aiohttp import web

from kachery_core.store.local import LocalStorage

from .accept_errors import AcceptErrorLog
from .auth import RotatingAuthCode
from .cache_watcher import CacheWatcher
from .channels.service import open_channels
from .connection_guard import GuardedSite, ServerLimits
from .feeds import FILE_NAME as FEEDS_FILE
from .feeds import FeedStore
from .grpc_limits import GrpcLimits
from .http_api import create_app
from .http_log import server_logger
from .mutables import FILE_NAME as MUTABLES_FILE
from .mutables import MutableStore
from .node import Node
from .node_files import (
    NODE_UMASK,
    StorageLock,
    clear_state,
    load_identity,
    secure_private_files,
    write_state,
)


@dataclass(frozen=True)
class NodeOptions:
    """What `kachery-daemon start` was asked for (see its --help for each option)."""

    storage_dir: Path
    host: str = "127.0.0.1"
    port: int = 20431
    node_key: Optional[Path] = None
    auth_group: Optional[int] = None
    path_identity: str = "auto"
    label: str = ""
    rotate_seconds: float = 300.0
    shutdown_grace_seconds: float = 10.0
    grpc_port: Optional[int] = None
    tls: Optional[Tuple[Path, Path]] = None
    """(certificate, private key) to serve HTTPS."""
    node_config: Optional[Path] = None
    """The node config file (channels)."""
    limits: ServerLimits = ServerLimits()
    grpc_max_connections: Optional[int] = None
    """None: what fits beside the HTTP cap (`grpc_limits.default_connection_cap`)."""
    max_cache_size: Optional[int] = None
    """Bytes the storage's objects may take; cached ones are evicted past it."""
    grace_seconds: float = 600.0


def run_node(options: NodeOptions) -> None:
    os.umask(NODE_UMASK)
    storage_dir = options.storage_dir
    storage_dir.mkdir(parents=True, exist_ok=True)
    lock = StorageLock(storage_dir)
    lock.acquire()
    try:
        identity = load_identity(storage_dir, options.node_key)
        secure_private_files(storage_dir, (MUTABLES_FILE, FEEDS_FILE))
        storage = LocalStorage(
            storage_dir, max_cache_size=options.max_cache_size, grace_period=options.grace_seconds
        )
        watcher = CacheWatcher(storage)
        node = Node(
            storage=storage,
            identity=identity,
            auth=RotatingAuthCode(storage_dir, options.rotate_seconds, options.auth_group),
            mutables=MutableStore(storage_dir / MUTABLES_FILE),
            feeds=FeedStore(storage_dir / FEEDS_FILE),
            label=options.label,
            config_file=options.node_config,
            path_identity=options.path_identity,
        )
        node.channels = open_channels(options.node_config, node.storage, identity.node_id)
        try:
            ssl_context = _ssl_context(*options.tls) if options.tls else None
            watcher.start()
            asyncio.run(_serve(node, options, ssl_context))
        finally:
            watcher.stop()
            node.mutables.close()
            node.feeds.close()
    finally:
        clear_state(storage_dir)
        lock.release()


def _ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """HTTPS straight from the node, for one that listens beyond loopback without a proxy."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        from kachery_core.errors import ConfigError

        raise ConfigError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}",
            "give a PEM certificate and its matching private key",
        ) from None
    return context


async def _serve(
    node: Node, options: NodeOptions, ssl_context: Optional[ssl.SSLContext] = None
) -> None:
    host, port, grpc_port = options.host, options.port, options.grpc_port
    grace_seconds = options.shutdown_grace_seconds
    limits = options.limits
    asyncio.get_running_loop().set_exception_handler(AcceptErrorLog())
    runner = web.AppRunner(
        create_app(node, limits),
        shutdown_timeout=grace_seconds,
        access_log=None,
        keepalive_timeout=limits.keepalive_seconds,
        logger=server_logger(),  # one line per malformed request, not a traceback
    )
    await runner.setup()
    grpc_server = None
    if grpc_port is not None:  # first, so that a node answering the HTTP probe serves both
        from .grpc_service import start_grpc_server  # grpc is imported only when asked for

        try:
            grpc_limits = GrpcLimits.beside_http(
                limits.connection_cap(),
                limits.header_seconds,
                limits.keepalive_seconds,
                limits.body_idle_seconds,
                limits.body_idle_seconds,  # the write timeout: no message either way
                options.grpc_max_connections,
            )
            grpc_server = await start_grpc_server(node, host, grpc_port, grpc_limits)
        except BaseException:
            await runner.cleanup()
            raise
    site = GuardedSite(runner, host, port, limits, ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if grpc_server is not None:
            await grpc_server.stop(None)
        from kachery_core.errors import ConfigError

        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "is another node or program using that port? choose --port",
        ) from None
    node.addresses = [f"{'https' if ssl_context else 'http'}://{host}:{port}"]
    if grpc_server is not None:
        node.addresses.append(f"grpc://{host}:{grpc_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_state(
        node.storage.root,
        host,
        port,
        node.identity.node_id,
        node.label,
        ssl_context is not None,
        grpc_port if grpc_server is not None else None,
    )
    print(
        f"kachery-daemon: node {node.identity.node_id} serving {node.storage.root} on {'https' if ssl_context else 'http'}://{host}:{port}"
        + (f" and grpc://{host}:{grpc_port}" if grpc_server is not None else ""),
        file=sys.stderr,
        flush=True,
    )
    print(f"kachery-daemon: {node.path_policy.identity.describe()}", file=sys.stderr, flush=True)
    rotation = asyncio.ensure_future(_rotate(node))
    try:
        await stop.wait()
    finally:
        rotation.cancel()
        print("kachery-daemon: stopping", file=sys.stderr, flush=True)
        # channel transfers still running after the grace period are stopped then
        loop.call_later(grace_seconds, node.cancel_channel_transfers)
        if grpc_server is not None:  # both servers get the same grace period, side by side
            await asyncio.gather(runner.cleanup(), grpc_server.stop(grace_seconds))
        else:
            await runner.cleanup()


async def _rotate(node: Node) -> None:
    interval = min(1.0, node.auth.rotate_seconds / 4)
    while True:
        await asyncio.sleep(interval)
        node.auth.rotate_if_due()
