"""Running a node: take the storage directory's lock, serve, and shut down cleanly.

On SIGTERM or SIGINT the node stops accepting connections, gives requests in flight up to
`shutdown_grace_seconds` (default 10) to finish, then cancels the rest. A cancelled upload's staging
file is removed, so no partial object ever appears; a node killed outright leaves only
its staging files, which the next store removes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Optional

from aiohttp import web

from kachery_core.local_storage import LocalStorage

from .auth import RotatingAuthCode
from .feeds import FILE_NAME as FEEDS_FILE
from .feeds import FeedStore
from .mutables import FILE_NAME as MUTABLES_FILE
from .mutables import MutableStore
from .node_files import StorageLock, clear_state, load_identity, write_state
from .server import Node, create_app


def run_node(
    storage_dir: Path,
    host: str,
    port: int,
    node_key: Optional[Path],
    auth_group: Optional[int],
    label: str,
    rotate_seconds: float,
    shutdown_grace_seconds: float = 10.0,
) -> None:
    storage_dir.mkdir(parents=True, exist_ok=True)
    lock = StorageLock(storage_dir)
    lock.acquire()
    try:
        identity = load_identity(storage_dir, node_key)
        node = Node(
            storage=LocalStorage(storage_dir),
            identity=identity,
            auth=RotatingAuthCode(storage_dir, rotate_seconds, auth_group),
            mutables=MutableStore(storage_dir / MUTABLES_FILE),
            feeds=FeedStore(storage_dir / FEEDS_FILE),
            label=label,
        )
        try:
            asyncio.run(_serve(node, host, port, shutdown_grace_seconds))
        finally:
            node.mutables.close()
            node.feeds.close()
    finally:
        clear_state(storage_dir)
        lock.release()


async def _serve(node: Node, host: str, port: int, grace_seconds: float) -> None:
    runner = web.AppRunner(create_app(node), shutdown_timeout=grace_seconds, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        from kachery_core.errors import ConfigError

        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "is another node or program using that port? choose --port",
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_state(node.storage.root, host, port, node.identity.node_id, node.label)
    print(
        f"kachery-daemon: node {node.identity.node_id} serving {node.storage.root} on http://{host}:{port}",
        file=sys.stderr,
        flush=True,
    )
    rotation = asyncio.ensure_future(_rotate(node))
    try:
        await stop.wait()
    finally:
        rotation.cancel()
        print("kachery-daemon: stopping", file=sys.stderr, flush=True)
        await runner.cleanup()


async def _rotate(node: Node) -> None:
    interval = min(1.0, node.auth.rotate_seconds / 4)
    while True:
        await asyncio.sleep(interval)
        node.auth.rotate_if_due()
