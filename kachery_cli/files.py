"""The file commands: `store-file`, `link-file`, `load-file`, `cat-file` and `upload`.

Each parses its arguments and calls one `Client` method per file or folder; progress bars
go to stderr, URIs and paths to stdout, in the order the paths were given.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import click

from kachery_core.progress import progress_bar

from .state import CHANNEL, CliState, fetch_channel_option, pass_state
from .state import progress as _progress
from .state import tree_progress as _tree_progress

if TYPE_CHECKING:
    from kachery_client.client import Client, ScannedFolder


def _tree_options(verb: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """-r, --label and --skip-errors, as store-file and link-file both take them."""

    def add(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(
            [
                click.option(
                    "-r",
                    "--recursive",
                    is_flag=True,
                    help=f"{verb} folders: print one sha1dir:// URI per folder.",
                ),
                click.option(
                    "--label",
                    help="Name to put in the URI (default: the file's or folder's base name; "
                    "one path only).",
                ),
                click.option(
                    "--skip-errors",
                    is_flag=True,
                    help="With -r: leave out broken links and special files (listed on "
                    "stderr) instead of failing.",
                ),
            ]
        ):
            command = option(command)
        return command

    return add


@click.command("store-file")
@click.argument("paths", nargs=-1, required=True, type=click.Path(allow_dash=True, path_type=str))
@_tree_options("Store")
@click.option(
    "--upload-to-channel",
    "channel",
    type=CHANNEL,
    metavar="NAME",
    help="Also have the node upload it to this channel, for the channel's other nodes.",
)
@pass_state
def store_file(
    state: CliState,
    paths: Tuple[str, ...],
    recursive: bool,
    label: Optional[str],
    skip_errors: bool,
    channel: Optional[str],
) -> None:
    """Store a copy of each PATH (- for stdin) and print its URI, one per line, in order.

    With -r, a folder is stored whole (every file, then the directory object naming them)
    and its sha1dir://HASH.LABEL URI is printed. With --upload-to-channel, each URI is
    printed once stored, before the upload: a failed upload (exit 1) still leaves the file
    stored, and its URI on stdout.
    """
    client = state.client
    if channel:
        client.check_upload(channel)  # before any work
    if path_count_error := _check_paths(paths, label):
        raise click.UsageError(path_count_error)
    _store_each(state, paths, label, recursive, skip_errors, channel, link=False)


def _check_paths(paths: Tuple[str, ...], label: Optional[str]) -> Optional[str]:
    """A usage error in the paths given, or None."""
    if label is not None and len(paths) > 1:
        return "--label names one URI; give one path with it"
    if "-" in paths and len(paths) > 1:
        return "- (stdin) must be the only path"
    return None


def _store_each(
    state: CliState,
    paths: Tuple[str, ...],
    label: Optional[str],
    recursive: bool,
    skip_errors: bool,
    channel: Optional[str],
    link: bool,
) -> None:
    """Store (or link) files and folders in order: runs of plain files go as one batch."""
    client = state.client
    if paths == ("-",):
        uri = client.store_stream(sys.stdin.buffer, label)
        click.echo(uri)
        if channel:
            sys.stdout.flush()
            _upload(client, uri, channel)
        return
    folders = {p for p in paths if os.path.isdir(p)}
    if folders and not recursive:
        from kachery_core.errors import InvalidInputError

        raise InvalidInputError(
            f"{sorted(folders)[0]!r} is a directory, not a file",
            "pass -r to store folders (as sha1dir:// URIs)",
        )
    scans = _check_folders(client, sorted(folders), skip_errors)  # all of them, before any store
    run: List[str] = []
    for path in [*paths, None]:
        if path is not None and path not in folders:
            run.append(path)
            continue
        if run:
            _store_run(state, run, label, channel, link)
            run = []
        if path is not None:
            _store_folder(state, path, label, scans[path], channel, link)


def _check_folders(
    client: Client, folders: List[str], skip_errors: bool
) -> Dict[str, ScannedFolder]:
    """Walk every folder first: one `Cannot store:` line per problem, then the error, and
    nothing stored; with --skip-errors, `Skipped:` lines."""
    from kachery_core.errors import FolderProblemsError

    scans: Dict[str, ScannedFolder] = {}
    failures: List[FolderProblemsError] = []
    for folder in folders:
        try:
            scans[folder] = client.check_dir(folder, skip_errors)
        except FolderProblemsError as exc:
            failures.append(exc)
            for line in exc.problems:
                click.echo(f"Cannot store: {line}", err=True)
            continue
        for line in scans[folder].problems:
            click.echo(f"Skipped: {line}", err=True)
    if failures:
        raise failures[0]
    return scans


def _store_run(
    state: CliState, paths: List[str], label: Optional[str], channel: Optional[str], link: bool
) -> None:
    """One batch of plain files; a single file keeps its byte progress bar."""
    client = state.client
    if len(paths) == 1:
        path = paths[0]
        size = _size_or_none(path)
        with _progress("linking" if link else "storing", size) as bar:
            if link:
                uri = client.link_file(path, label, bar)
            else:
                uri = client.store_file(path, label, bar)
        uris = [uri]
    else:
        total = sum(_size_or_none(p) or 0 for p in paths)
        with _tree_progress("linking" if link else "storing", len(paths), total) as bar:
            uris = client.store_files(paths, link=link, progress=bar)
    for uri in uris:
        click.echo(uri)
        if channel:
            sys.stdout.flush()
            _upload(client, uri, channel, None)


def _store_folder(
    state: CliState,
    path: str,
    label: Optional[str],
    scanned: ScannedFolder,
    channel: Optional[str],
    link: bool,
) -> None:
    client = state.client
    files, size = len(scanned.files), scanned.total_size
    with _tree_progress("linking" if link else "storing", files, size) as bar:
        uri = client.store_dir(path, label, link=link, progress=bar, scanned=scanned)
    click.echo(uri)
    if channel:
        sys.stdout.flush()
        with _tree_progress(f"uploading to {channel}", files, size):
            client.upload_to_channel(str(uri), channel)
        click.echo(f"uploaded to channel {channel}", err=True)


def _upload(client: Client, uri: str, channel: str, size: Optional[int] = None) -> None:
    """Have the node upload `uri` to `channel`, with a progress bar on a terminal."""
    with _progress(f"uploading to {channel}", size) as bar:
        client.upload_to_channel(uri, channel, bar)
    click.echo(f"uploaded to channel {channel}", err=True)


@click.command("link-file")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@_tree_options("Link")
@pass_state
def link_file(
    state: CliState,
    paths: Tuple[str, ...],
    recursive: bool,
    label: Optional[str],
    skip_errors: bool,
) -> None:
    """Make each PATH loadable without copying it; print its URI, one per line, in order.

    A link is served only while the file is unchanged: same size, mtime, inode and
    ctime (so even an edit whose mtime was put back, or a chmod, makes it stale). With -r,
    every file of a folder is linked and the directory object naming them is stored.
    """
    if path_count_error := _check_paths(paths, label):
        raise click.UsageError(path_count_error)
    if "-" in paths:
        raise click.UsageError("link-file needs a file path; store stdin with store-file -")
    _store_each(state, paths, label, recursive, skip_errors, None, link=True)


@click.command("load-file")
@click.argument("uri")
@click.option(
    "--dest",
    type=click.Path(path_type=str),
    help="Also copy the file here: a file path, or a directory (DIR/ must exist). Only a "
    "regular file or a symlink to one is replaced (the symlink itself, by rename). With -r: "
    "the folder to create (new, or empty unless --force).",
)
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="Load a whole sha1dir:// tree into --dest (every file hash-checked).",
)
@click.option("--force", is_flag=True, help="With -r: write into a --dest that is not empty.")
@click.option(
    "--copy",
    is_flag=True,
    help="With -r: write independent (writable) copies, not read-only hard links to the store.",
)
@fetch_channel_option
@pass_state
def load_file(
    state: CliState,
    uri: str,
    dest: Optional[str],
    recursive: bool,
    force: bool,
    copy: bool,
    channel: Optional[str],
) -> None:
    """Make the file available locally and print its path.

    URI is a sha1:// URI or a path inside a sha1dir:// URI. With -r and --dest DIR, the
    whole tree a sha1dir:// URI names is written at DIR (hard links from the store where
    the filesystem allows, copies otherwise), and DIR is printed.
    """
    state.channel = channel
    if recursive:
        if dest is None:
            raise click.UsageError("load-file -r needs --dest DIR (the folder to create)")
        if not uri.startswith("sha1dir://"):
            raise click.UsageError(f"load-file -r takes a sha1dir:// URI, not {uri!r}")
        with _tree_progress("loading", None, None) as bar:
            click.echo(state.client.load_dir(uri, dest, force=force, copy=copy, progress=bar))
        return
    if force or copy:
        raise click.UsageError("--force and --copy go with -r")
    bar = progress_bar("loading")
    try:
        click.echo(state.client.load_file(uri, dest, bar))
    finally:
        if bar:
            bar.close()


@click.command("upload")
@click.argument("uri")
@click.option(
    "--channel",
    type=CHANNEL,
    metavar="NAME",
    help="The channel to upload to (default: KACHERY_CHANNEL).",
)
@pass_state
def upload(state: CliState, uri: str, channel: Optional[str]) -> None:
    """Have the node upload a file it holds (stored or linked) to a channel.

    For a file stored without --upload-to-channel: the channel's other nodes can then load
    it. Uploading a file the channel already has does nothing.
    """
    client = state.client
    name = channel or client.config.channel
    if name is None:
        raise click.UsageError(
            "no channel to upload to: give --channel NAME, or set KACHERY_CHANNEL"
        )
    _upload(client, uri, name)


@click.command("cat-file")
@click.argument("uri")
@click.option("--start", type=click.IntRange(min=0), default=0, help="First byte (default 0).")
@click.option(
    "--end",
    type=click.IntRange(min=0),
    default=None,
    help="Byte after the last (default: the end).",
)
@fetch_channel_option
@pass_state
def cat_file(
    state: CliState, uri: str, start: int, end: Optional[int], channel: Optional[str]
) -> None:
    """Write the file's bytes (or bytes START to END) to stdout.

    Every byte is checked against the URI's hash: on a mismatch the exit code is 1, and
    only files over 4 MiB have written bytes by then (check the exit status of a pipe).
    """
    from .output import copy_to_fd

    state.channel = channel

    if end is not None and end < start:
        raise click.BadParameter(f"--end {end} is before --start {start}", param_hint="--end")
    sys.stdout.flush()
    with state.client.open(uri, start, end) as stream:
        copy_to_fd(stream, sys.stdout.fileno())


def _size_or_none(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
