"""`kachery-daemon usage|pin|unpin|drop|gc`: storage use of the node's storage directory,
found as the other commands find it. Safe while the node runs: the index and the
collection lock (`kachery_core.store.collect`) are shared with it."""

from __future__ import annotations

import json
from typing import Any, Optional, Tuple

import click

from kachery_core.settings.config import resolve_config
from kachery_core.settings.size_param import SIZE

from .admin_files import node_storage

storage_dir_option = click.option(
    "--storage-dir", default=None, help="Storage directory of the node."
)


def _storage(storage_dir: Optional[str]) -> Any:
    from kachery_core.store.local import LocalStorage

    root, where = node_storage(storage_dir)
    config = resolve_config({})
    click.echo(f"storage directory {root} ({where})", err=True)
    return LocalStorage(
        root, max_cache_size=config.max_cache_size, grace_period=config.gc_grace_seconds
    )


@click.command("usage")
@storage_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def usage(storage_dir: Optional[str], as_json: bool) -> None:
    """Show what the node's storage holds: pinned, cached, links, quarantine, temporary."""
    from kachery_core.store.collect import usage as store_usage
    from kachery_core.store.collect import usage_lines

    figures = store_usage(_storage(storage_dir))
    if as_json:
        click.echo(json.dumps(figures, indent=2))
    else:
        for line in usage_lines(figures):
            click.echo(line)


@click.command("pin")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@storage_dir_option
def pin(uris: Tuple[str, ...], storage_dir: Optional[str]) -> None:
    """Keep objects in the node's storage whatever gc does (sha1dir://: the whole tree)."""
    from kachery_core.store.collect import hashes_of, set_pinned

    storage = _storage(storage_dir)
    click.echo(f"pinned {set_pinned(storage, hashes_of(storage, uris), True)} objects", err=True)


@click.command("unpin")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@storage_dir_option
def unpin(uris: Tuple[str, ...], storage_dir: Optional[str]) -> None:
    """Let gc evict objects of the node's storage (sha1dir://: the whole tree)."""
    from kachery_core.store.collect import hashes_of, set_pinned

    storage = _storage(storage_dir)
    changed = set_pinned(storage, hashes_of(storage, uris), False)
    click.echo(f"unpinned {changed} objects", err=True)


@click.command("drop")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@storage_dir_option
@click.option("--force", is_flag=True, help="Remove pinned objects and link records too.")
def drop(uris: Tuple[str, ...], storage_dir: Optional[str], force: bool) -> None:
    """Remove cached objects from the node's storage now; pinned ones only with --force."""
    from kachery_core.store.collect import drop as store_drop
    from kachery_core.store.collect import hashes_of

    storage = _storage(storage_dir)
    removed = store_drop(storage, hashes_of(storage, uris), force)
    for sha1, size in removed:
        click.echo(f"removed sha1://{sha1} ({size} bytes)")
    click.echo(f"dropped {len(removed)} objects", err=True)


@click.command("gc")
@storage_dir_option
@click.option(
    "--max-size",
    type=SIZE,
    default=None,
    help="Evict until the objects take at most this (50GiB...); default: max_cache_size, "
    "or every cached object when it is unset.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def gc(storage_dir: Optional[str], max_size: Optional[int], dry_run: bool, as_json: bool) -> None:
    """Evict cached objects of the node's storage, least recently used first; remove
    abandoned temporary files and stale link records."""
    from kachery_core.store.collect import gc as store_gc

    report = store_gc(_storage(storage_dir), max_size, dry_run)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.line())
