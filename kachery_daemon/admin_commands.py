"""`kachery-daemon token ...` and `kachery-daemon channel ...`: the node's administration.

They work on a node's storage directory and config file, found as `start` finds them
(`admin_files.node_storage`), whether or not the node is running.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

import click

from kachery_core.errors import ConfigError

from .admin_files import check_token_output, node_storage, storage_dir_setting, write_token_file
from .scopes import DEFAULT_TOKEN_SCOPE, TOKEN_SCOPES  # only the standard library

if TYPE_CHECKING:
    from .tokens import TokenStore


@click.group()
def token() -> None:
    """Access tokens for clients that cannot read the node's client-auth file."""


def _token_store(storage_dir: Optional[str]) -> Tuple[TokenStore, str]:
    """The token file of the node's storage directory, and which directory that is."""
    from .tokens import TokenStore

    root, where = node_storage(storage_dir, need_node=True)
    return TokenStore(root), f"{root} ({where})"


@token.command("create")
@click.option("--label", required=True, help="Whose token this is, or what it is for.")
@click.option(
    "--scope",
    type=click.Choice(TOKEN_SCOPES),
    default=DEFAULT_TOKEN_SCOPE,
    show_default=True,
    help="read: load and read only; write: also store, mutables, feeds; admin: also /stats.",
)
@click.option("--storage-dir", default=None, help="Storage directory of the node.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the token into this new file (mode 0600) instead of printing it.",
)
@click.option("--force", is_flag=True, help="With --output: replace an existing file.")
def token_create(
    label: str, scope: str, storage_dir: Optional[str], output: Optional[Path], force: bool
) -> None:
    """Create a token and print it (only this once: the node keeps just its hash)."""
    if force and output is None:
        raise click.UsageError("--force goes with --output FILE")
    if output is not None:
        check_token_output(output, force)
    store, where = _token_store(storage_dir)
    record, secret = store.create(label, scope)
    if output is None:
        click.echo(secret)
    else:
        try:
            write_token_file(output, secret, force)
        except BaseException:
            store.revoke(record.token_id)  # nobody holds it: it must not stay valid
            raise
    held = "" if output is None else f", written to {output} (mode 0600)"
    click.echo(
        f"token {record.token_id} ({record.shown_label}, scope {record.scope}) created for the node "
        f"of {where}{held}; the client sets KACHERY_AUTH_TOKEN or auth_token_file",
        err=True,
    )


@token.command("list")
@click.option("--storage-dir", default=None, help="Storage directory of the node.")
def token_list(storage_dir: Optional[str]) -> None:
    """List tokens: id, creation time, scope and label (never the tokens themselves)."""
    store, where = _token_store(storage_dir)
    records = store.records()
    for record in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created))
        click.echo(f"{record.token_id}  {created}  {record.scope:<5}  {record.shown_label}")
    click.echo(f"{len(records)} token(s) of the node of {where}", err=True)


@token.command("revoke")
@click.argument("id_or_label")
@click.option("--storage-dir", default=None, help="Storage directory of the node.")
def token_revoke(id_or_label: str, storage_dir: Optional[str]) -> None:
    """Revoke a token by its id or label; it stops working on the next request."""
    store, where = _token_store(storage_dir)
    record = store.revoke(id_or_label)
    click.echo(
        f"revoked token {record.token_id} ({record.shown_label}) of the node of {where}", err=True
    )


@click.group()
def channel() -> None:
    """The channels of the node's config file."""


@channel.command("check")
@click.argument("name")
@click.option("--storage-dir", default=None, help="Storage directory of the node.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Node config file (default: <storage dir>/kachery-node.toml).",
)
def channel_check(name: str, storage_dir: Optional[str], config_file: Optional[Path]) -> None:
    """Check channel NAME: endpoint, credentials, bucket and prefix, with a write where the
    node writes. One line per problem; exit status 1 if there is any."""
    from .channels.bucket import ChannelBucket
    from .channels.check import check_channel
    from .channels.config import load_node_config

    root = storage_dir_setting(storage_dir) if config_file else node_storage(storage_dir)[0]
    config = load_node_config(config_file, root)
    if name not in config.channels:
        known = ", ".join(sorted(config.channels)) or "none"
        raise ConfigError(
            f"no channel {name!r} in {config.path or 'the node config file'}",
            f"its channels: {known}",
        )
    bucket = ChannelBucket(config.channels[name])
    problems = check_channel(bucket)
    for problem in problems:
        click.echo(f"Error: channel {name}: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(
        f"channel {name}: {bucket.url(bucket.channel.prefix)} at {bucket.channel.endpoint}: ok"
    )
