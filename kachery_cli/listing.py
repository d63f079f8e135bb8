"""`kachery-client ls`: the entries of a `sha1dir://` directory, for people and scripts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

import click

from .state import CHANNEL, CliState, pass_state

if TYPE_CHECKING:
    from kachery_client.client import Client
    from kachery_core.content.directory import Directory, FileEntry
    from kachery_core.content.uri import DirUri


@click.command("ls")
@click.argument("uri")
@click.option("-r", "--recursive", is_flag=True, help="List every file and folder below.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
@click.option(
    "--channel",
    type=CHANNEL,
    metavar="NAME",
    help="If the node lacks the directory object, it fetches it from this channel "
    "(default: KACHERY_CHANNEL).",
)
@pass_state
def ls(state: CliState, uri: str, recursive: bool, as_json: bool, channel: Optional[str]) -> None:
    """List a sha1dir:// directory: name, size and URI of each entry.

    Folders end in / and show the total size of the files below them. With --json: a list
    of {"name", "type" ("file" or "dir"), "size", "uri"}, names relative to URI.
    """
    state.channel = channel
    entries = list_entries(state.client, uri, recursive)
    print_entries(entries, as_json)


@dataclass(frozen=True)
class Entry:
    name: str
    """The path below the listed URI (`/`-separated)."""
    type: str
    """`file` or `dir`."""
    size: int
    """A file's size; for a folder, the total size of the files below it."""
    uri: str


def list_entries(client: Client, uri: str, recursive: bool) -> List[Entry]:
    """The entries of the directory (or the one file) `uri` names, sorted by name."""
    from kachery_core.content.directory import FileEntry
    from kachery_core.content.uri import parse_dir_uri

    parsed = parse_dir_uri(uri)
    found = client.lookup(parsed)
    if isinstance(found, FileEntry):
        return [_file(parsed.path[-1], parsed.path[-1], found)]
    entries: List[Entry] = []
    _collect(found, parsed, (), recursive, entries)
    return entries


def _collect(
    directory: Directory,
    uri: DirUri,
    prefix: Tuple[str, ...],
    recursive: bool,
    entries: List[Entry],
) -> None:
    for name in sorted({*directory.dirs, *directory.files}):
        path = prefix + (name,)
        if name in directory.files:
            entries.append(_file("/".join(path), name, directory.files[name]))
            continue
        sub = directory.dirs[name]
        entries.append(Entry("/".join(path) + "/", "dir", sub.totals()[1], str(uri.join(*path))))
        if recursive:
            _collect(sub, uri, path, recursive, entries)


def _file(shown: str, name: str, entry: FileEntry) -> Entry:
    uri = str(entry.uri(name)) if entry.sha1 else "(no sha1: cannot be loaded)"
    return Entry(shown, "file", entry.size, uri)


def print_entries(entries: List[Entry], as_json: bool) -> None:
    """One line per entry for people (names escaped, see `shown`); JSON names stay exact."""
    if as_json:
        click.echo(json.dumps([asdict(e) for e in entries], indent=1))
        return
    if not entries:
        return
    names = [shown(e.name) for e in entries]
    name_width = max(len(n) for n in names)
    size_width = max(len(str(e.size)) for e in entries)
    for name, e in zip(names, entries):
        click.echo(f"{name:<{name_width}}  {e.size:>{size_width}}  {shown(e.uri)}")


def shown(text: str) -> str:
    """`text` for a terminal line, every character Python does not call printable written
    as `\\uXXXX`: bidi controls (U+202E makes a name show reversed), line and paragraph
    separators (U+2028 and U+2029 split one entry into several lines for
    `str.splitlines()`), zero-width and other format characters. Names never hold a
    backslash (a directory object refuses one), so an escape cannot be taken for a name."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
