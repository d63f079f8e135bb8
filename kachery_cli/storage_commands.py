"""Commands about storage use: `usage`, `pin`, `unpin`, `drop`, `gc`, `init-shared`.

Each parses and calls the `Client` (whose work is `kachery_core.store.collect`, which
`kachery-daemon` shares); the text they print is `collect`'s too.
"""

from __future__ import annotations

import json
from typing import Optional, Tuple

import click

from kachery_core.settings.size_param import SIZE

from .state import CliState, pass_state


@click.command("usage")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_state
def usage(state: CliState, as_json: bool) -> None:
    """Show what the active storage holds: pinned, cached, links, quarantine, temporary
    files (objects and bytes), from its index."""
    from kachery_core.store.collect import usage_lines

    figures = state.client.usage()
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    click.echo(f"storage {state.client.local_store().root}")
    for line in usage_lines(figures):
        click.echo(line)


@click.command("pin")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@pass_state
def pin(state: CliState, uris: Tuple[str, ...]) -> None:
    """Keep objects whatever gc does (a sha1dir:// URI: its whole tree)."""
    changed = state.client.pin(list(uris))
    click.echo(f"pinned {changed} objects", err=True)


@click.command("unpin")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@pass_state
def unpin(state: CliState, uris: Tuple[str, ...]) -> None:
    """Let gc evict objects: they count as cached (a sha1dir:// URI: its whole tree)."""
    changed = state.client.unpin(list(uris))
    click.echo(f"unpinned {changed} objects", err=True)


@click.command("drop")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@click.option("--force", is_flag=True, help="Remove pinned objects and link records too.")
@pass_state
def drop(state: CliState, uris: Tuple[str, ...], force: bool) -> None:
    """Remove cached objects now; a pinned one only with --force."""
    removed = state.client.drop(list(uris), force)
    for sha1, size in removed:
        click.echo(f"removed sha1://{sha1} ({size} bytes)")
    click.echo(f"dropped {len(removed)} objects", err=True)


@click.command("gc")
@click.option(
    "--max-size",
    type=SIZE,
    default=None,
    help="Evict until the objects take at most this (50GiB, 500MB...); default: "
    "max_cache_size, or every cached object when it is unset.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def gc(state: CliState, max_size: Optional[int], dry_run: bool, as_json: bool) -> None:
    """Evict cached objects, least recently used first (never pinned ones, nor any used
    within the grace period); remove abandoned temporary files and stale link records."""
    report = state.client.gc(max_size, dry_run)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.line())


@click.command("init-shared")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--group", required=True, help="The group whose members share the store.")
def init_shared(directory: str, group: str) -> None:
    """Make DIRECTORY a storage directory that the members of a group share without a
    node: setgid, group-writable; every object, staging file, lock and index file gets
    the group."""
    import kachery_client

    done = kachery_client.init_shared(directory, group)
    click.echo(
        f"{done['storage_dir']} is shared by group {group} ({done['entries']} entries set); "
        f"members use it with KACHERY_STORAGE_DIR={done['storage_dir']}"
    )
