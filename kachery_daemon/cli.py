"""`kachery-daemon`: start, inspect and stop the node that owns a storage directory."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import click

from kachery_core import __version__
from kachery_core.errors import ConfigError, KacheryError
from kachery_core.settings.config import resolve_config
from kachery_core.settings.size_param import SIZE

from .admin_commands import channel, token
from .admin_files import node_storage
from .auth_group import auth_group_id  # only the standard library
from .limit_defaults import (
    DEFAULT_BODY_IDLE_SECONDS,
    DEFAULT_BODY_MIN_RATE,
    DEFAULT_HEADER_SECONDS,
    DEFAULT_JSON_BODY_SECONDS,
    DEFAULT_KEEPALIVE_SECONDS,
    DEFAULT_WRITE_SECONDS,
)
from .storage_commands import drop, gc, pin, unpin, usage

PROG = "kachery-daemon"
PORT = click.IntRange(1, 65535)
"""Every port option: checked by click, before anything is written (a usage error)."""
MIN_ROTATE_SECONDS = 60.0
"""The original kachery-client 1.2.0 reads the auth code once a minute; a code stays valid
for two rotation periods, so a period of at least this keeps its cached code valid."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """The kachery node: owns a storage directory and serves it to clients."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=PORT,
    default=None,
    help="Port (default: KACHERY_DAEMON_PORT or 20431).",
)
@click.option(
    "--storage-dir",
    default=None,
    help="Storage directory (default: KACHERY_STORAGE_DIR or ~/kachery-storage).",
)
@click.option(
    "--node-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM key from `kachery-client generate-node-id`.",
)
@click.option("--auth-group", default=None, help="Group allowed to read the client-auth file.")
@click.option(
    "--path-identity",
    type=click.Choice(["auto", "node-user", "group", "none"]),
    default="auto",
    show_default=True,
    help="Whom path requests (/storeFile, /linkFile) are read for: the node's user, any "
    "member of the client-auth group, or nobody; auto: the group (the node's user when it "
    "is alone in it), nobody when the group's members cannot be known.",
)
@click.option("--label", default="", help="A name for this node, shown by the probe.")
@click.option(
    "--auth-rotate-seconds",
    type=float,
    default=300.0,
    show_default=True,
    help=f"How often the client auth code changes (at least {MIN_ROTATE_SECONDS:g}, "
    "see --allow-short-rotation).",
)
@click.option(
    "--allow-short-rotation",
    is_flag=True,
    help=f"Allow --auth-rotate-seconds below {MIN_ROTATE_SECONDS:g} (for tests); the "
    "original kachery-client then fails with 403s.",
)
@click.option(
    "--shutdown-grace-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="On stop, how long transfers in flight may take before they are aborted.",
)
@click.option(
    "--grpc-port",
    type=PORT,
    default=None,
    help="Also serve the gRPC API on this port, on the same --host (default: no gRPC).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve HTTPS with this certificate (PEM; with --tls-key).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key (PEM) of --tls-cert.",
)
@click.option(
    "--config",
    "node_config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Node config file: the channels it belongs to (default: <storage dir>/kachery-node.toml if present).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_HEADER_SECONDS,
    show_default=True,
    help="Seconds a new connection has to send its request headers (gRPC: finish its "
    "handshake) before it is closed.",
)
@click.option(
    "--body-idle-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_BODY_IDLE_SECONDS,
    show_default=True,
    help="Seconds an upload may send nothing before it is answered 408 (gRPC: a call's "
    "request, upload or answer stream that does not move is ended with DEADLINE_EXCEEDED).",
)
@click.option(
    "--body-min-rate",
    type=click.FloatRange(min=1),
    default=DEFAULT_BODY_MIN_RATE,
    show_default=True,
    help="Bytes per second a request body must average, after a head start of "
    "--body-idle-timeout (uploads) or --json-body-timeout (JSON bodies); slower is 408.",
)
@click.option(
    "--json-body-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_JSON_BODY_SECONDS,
    show_default=True,
    help="Seconds a JSON request body has before --body-min-rate applies.",
)
@click.option(
    "--write-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_WRITE_SECONDS,
    show_default=True,
    help="Seconds an answer may wait for the client to read it before the connection is closed.",
)
@click.option(
    "--keepalive-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_KEEPALIVE_SECONDS,
    show_default=True,
    help="Seconds an idle kept-alive connection (gRPC: one with no call) stays open.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=None,
    help="Open HTTP connections at most; at the cap a connection still sending its first "
    "headers makes room, else new ones are answered 503 at once "
    "(default: 1000, or half the open-file limit if lower).",
)
@click.option(
    "--grpc-max-connections",
    type=click.IntRange(min=1),
    default=None,
    help="Open gRPC connections at most; more are closed at once (default: 1000, or a "
    "quarter of what --max-connections leaves of the open-file limit if lower).",
)
@click.option(
    "--max-cache-size",
    type=SIZE,
    default=None,
    help="Bytes the storage's objects may take (50GiB...): past it the node evicts least "
    "recently used cached objects, never pinned ones (default: KACHERY_MAX_CACHE_SIZE).",
)
def start(
    host: str,
    port: Optional[int],
    storage_dir: Optional[str],
    node_key: Optional[Path],
    auth_group: Optional[str],
    path_identity: str,
    label: str,
    auth_rotate_seconds: float,
    allow_short_rotation: bool,
    shutdown_grace_seconds: float,
    grpc_port: Optional[int],
    tls_cert: Optional[Path],
    tls_key: Optional[Path],
    node_config: Optional[Path],
    header_timeout: float,
    body_idle_timeout: float,
    body_min_rate: float,
    json_body_timeout: float,
    write_timeout: float,
    keepalive_timeout: float,
    max_connections: Optional[int],
    grpc_max_connections: Optional[int],
    max_cache_size: Optional[int],
) -> None:
    """Run the node in the foreground until stopped (Ctrl-C, SIGTERM or `kachery-daemon stop`)."""
    from .connection_guard import ServerLimits
    from .runner import NodeOptions, run_node

    flags = {"storage_dir": storage_dir, "max_cache_size": max_cache_size}
    config = resolve_config(
        {k: v for k, v in flags.items() if v is not None}, explicit_source="command line"
    )
    group = auth_group_id(auth_group, config.storage_dir) if auth_group else None
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if auth_rotate_seconds < MIN_ROTATE_SECONDS and not allow_short_rotation:
        raise click.UsageError(
            f"--auth-rotate-seconds must be at least {MIN_ROTATE_SECONDS:g}: the original "
            f"kachery-client caches the auth code for {MIN_ROTATE_SECONDS:g} s, so a shorter "
            "rotation makes its requests fail with 403 (--allow-short-rotation to use it anyway)"
        )
    options = NodeOptions(
        storage_dir=config.storage_dir,
        host=host,
        port=port or config.daemon_port,
        node_key=node_key,
        auth_group=group,
        path_identity=path_identity,
        label=label,
        rotate_seconds=auth_rotate_seconds,
        shutdown_grace_seconds=shutdown_grace_seconds,
        grpc_port=grpc_port,
        tls=(tls_cert, tls_key) if tls_cert and tls_key else None,
        node_config=node_config,
        limits=ServerLimits(
            header_seconds=header_timeout,
            body_idle_seconds=body_idle_timeout,
            keepalive_seconds=keepalive_timeout,
            max_connections=max_connections,
            write_seconds=write_timeout,
            json_body_seconds=json_body_timeout,
            body_min_rate=body_min_rate,
        ),
        grpc_max_connections=grpc_max_connections,
        max_cache_size=config.max_cache_size,
        grace_seconds=config.gc_grace_seconds,
    )
    run_node(options)


@cli.command()
@click.option("--storage-dir", default=None, help="Storage directory of the node.")
def info(storage_dir: Optional[str]) -> None:
    """Show whether a node runs on the storage directory, and its address and ID."""
    from kachery_core.protocol.probe import Tls, probe_node
    from kachery_core.store.layout import StorageLayout

    from .node_files import read_state

    root, where = node_storage(storage_dir)
    state = read_state(root)
    node_id = StorageLayout(root).read_node_id()
    click.echo(f"storage dir  {root} ({where})")
    click.echo(f"node id      {node_id or 'none yet'}")
    if state is None:
        click.echo("running      no")
        return
    tls = Tls(verify=False) if state.get("tls") else None  # our own node: is it up?
    answer = probe_node(state["host"], int(state["port"]), timeout=2.0, tls=tls)
    running = answer is not None and answer.node_id == node_id
    click.echo(f"running      {'yes' if running else 'no (stale state file)'}")
    click.echo(f"pid          {state['pid']}")
    scheme = "https" if state.get("tls") else "http"
    click.echo(f"address      {scheme}://{state['host']}:{state['port']}")
    if state.get("grpcPort"):
        click.echo(f"grpc         {state['host']}:{state['grpcPort']}")


@cli.command()
@click.option("--storage-dir", default=None, help="Storage directory of the node.")
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for it to finish.",
)
def stop(storage_dir: Optional[str], timeout: float) -> None:
    """Stop the node gracefully: transfers in flight finish or are cleanly aborted."""
    from .node_files import read_state

    root, where = node_storage(storage_dir)
    state = read_state(root)
    if state is None:
        raise ConfigError(
            f"no node is running on {root} ({where})",
            "start one with `kachery-daemon start`, or pass the --storage-dir of the running one",
        )
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise ConfigError(f"the node recorded for {root} (pid {pid}) is not running") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_state(root) is None:
            click.echo(f"stopped node (pid {pid}) of {root} ({where})", err=True)
            return
        time.sleep(0.05)
    raise KacheryError(f"node pid {pid} did not stop within {timeout:g} s")


@cli.command()
@click.argument("uris", nargs=-1, metavar="[URI]...")
@click.option("--storage-dir", default=None, help="Storage directory of the node.")
@click.option(
    "--prune-stale", is_flag=True, help="Remove link records whose file is gone or changed."
)
def verify(uris: Tuple[str, ...], storage_dir: Optional[str], prune_stale: bool) -> None:
    """Re-hash the node's objects and links (all, or the URIs given); safe while it runs.

    Damaged objects are moved to <dir>/quarantine/; stale links are reported (removed
    with --prune-stale). One line per finding on stdout; exit 1 when there were any.
    """
    from kachery_core.store.check import check_and_report
    from kachery_core.store.local import LocalStorage

    from .verify_record import write_verify_record

    root, where = node_storage(storage_dir)
    click.echo(f"checking storage directory {root} ({where})", err=True)
    started = time.time()
    code = check_and_report(LocalStorage(root), list(uris) or None, prune_stale)
    write_verify_record(root, started, time.time(), str(len(uris)) if uris else "all", code)
    sys.exit(code)


cli.add_command(token)
cli.add_command(channel)
for _command in (usage, pin, unpin, drop, gc):
    cli.add_command(_command)


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        code = cli.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"Error: {exc.format_message()} (see '{PROG} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except KacheryError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        where = f": {exc.filename!r}" if exc.filename else ""
        click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(130)
    sys.exit(code or 0)
