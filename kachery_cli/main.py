"""`kachery-client`: store, link, load and print files by their `sha1://` URI.

Only data goes to stdout (a URI, a path, file bytes); messages and progress go to
stderr. Errors are one line, `Error: ...`, with exit code 1 (2 for usage errors); a
traceback only with `--debug`.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import click

from kachery_core import __version__
from kachery_core.errors import KacheryError
from kachery_core.progress import progress_bar, tree_progress_bar

if TYPE_CHECKING:
    from kachery_client.client import Client
    from kachery_client.directories.scan import ScannedTree
    from kachery_core.store.local import LocalStorage

PROG = "kachery-client"


class CliState:
    """The global options, and the client they configure (made on first use)."""

    def __init__(self, backend: Optional[str], profile: Optional[str], debug: bool) -> None:
        self.backend = backend
        self.profile = profile
        self.debug = debug
        self.channel: Optional[str] = None
        """--channel of the command, set before the client is made."""
        self._client: Optional[Client] = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from kachery_client.client import Client

            self._client = Client(
                self.backend, profile=self.profile, channel=self.channel, _source="command line"
            )
        return self._client


pass_state = click.make_pass_decorator(CliState)


class ChannelName(click.ParamType):
    """A channel name, checked by the one rule for them before the command does any work."""

    name = "channel"

    def convert(
        self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]
    ) -> str:
        from kachery_client.client import InvalidChannelNameError, check_channel_name

        try:
            return check_channel_name(value)
        except InvalidChannelNameError as exc:
            self.fail(exc.message, param, ctx)


CHANNEL = ChannelName()


def _print_version(ctx: click.Context, _param: object, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG} {__version__}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--backend",
    "--transport",
    "backend",
    metavar="NAME",
    help="Backend to use (overrides KACHERY_BACKEND and the config file; "
    "--transport is another spelling).",
)
@click.option(
    "--profile",
    metavar="NAME",
    help="Use the settings of [profiles.NAME] in the config files (overrides KACHERY_PROFILE).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, backend: Optional[str], profile: Optional[str], debug: bool) -> None:
    """Store files by content and load them back by sha1:// URI."""
    ctx.obj = CliState(backend, profile, debug)


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


@cli.command("store-file")
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
    scans = _check_folders(sorted(folders), skip_errors)  # all of them, before any store
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


def _check_folders(folders: List[str], skip_errors: bool) -> Dict[str, ScannedTree]:
    """Walk every folder first: one `Cannot store:` line per problem, then the error, and
    nothing stored; with --skip-errors, `Skipped:` lines."""
    from kachery_client.directories.operations import check_tree
    from kachery_core.errors import TreeProblemsError

    scans: Dict[str, ScannedTree] = {}
    failures: List[TreeProblemsError] = []
    for folder in folders:
        try:
            scans[folder] = check_tree(Path(folder), skip_errors)
        except TreeProblemsError as exc:
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
    scanned: ScannedTree,
    channel: Optional[str],
    link: bool,
) -> None:
    from kachery_client.directories.operations import store_tree

    client = state.client
    files, size = len(scanned.files), scanned.total_size
    with _tree_progress("linking" if link else "storing", files, size) as bar:
        uri = store_tree(
            client.transport, Path(path), label, link=link, progress=bar, scanned=scanned
        )
    click.echo(str(uri))
    if channel:
        sys.stdout.flush()
        with _tree_progress(f"uploading to {channel}", files, size):
            client.upload_to_channel(str(uri), channel)
        click.echo(f"uploaded to channel {channel}", err=True)


@contextmanager
def _tree_progress(label: str, files: Optional[int], size: Optional[int]) -> Iterator[Any]:
    """A files-and-bytes progress bar (None off a terminal), closed however the work ends."""
    bar = tree_progress_bar(label, files, size)
    try:
        yield bar
    finally:
        if bar:
            bar.close()


def _upload(client: Client, uri: str, channel: str, size: Optional[int] = None) -> None:
    """Have the node upload `uri` to `channel`, with a progress bar on a terminal."""
    with _progress(f"uploading to {channel}", size) as bar:
        client.upload_to_channel(uri, channel, bar)
    click.echo(f"uploaded to channel {channel}", err=True)


@contextmanager
def _progress(label: str, size: Optional[int] = None) -> Iterator[Any]:
    """A progress bar (None off a terminal), closed however the work ends."""
    bar = progress_bar(label, size)
    try:
        yield bar
    finally:
        if bar:
            bar.close()


@cli.command("link-file")
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


@cli.command("load-file")
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
@click.option(
    "--channel",
    type=CHANNEL,
    metavar="NAME",
    help="If the node lacks the file, it fetches it from this channel (default: KACHERY_CHANNEL).",
)
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


@cli.command("ls")
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
    from .listing import list_entries, print_entries

    state.channel = channel
    entries = list_entries(state.client, uri, recursive)
    print_entries(entries, as_json)


@cli.command("upload")
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


@cli.command("verify")
@click.argument("uris", nargs=-1, metavar="[URI]...")
@click.option(
    "--prune-stale", is_flag=True, help="Remove link records whose file is gone or changed."
)
@pass_state
def verify(state: CliState, uris: Tuple[str, ...], prune_stale: bool) -> None:
    """Re-hash objects and links in the active storage (all of them, or the URIs given).

    The active storage is the directory this client reads objects from: the storage
    directory (local), KACHERY_OFFLINE_STORAGE_DIR (offline), the node's storage
    directory (http), the client's cache or shared storage (remote, grpc). Damaged
    objects are moved to <dir>/quarantine/, so a later load fetches a good copy; stale
    links are reported. One line per finding on stdout; exit 1 when there were any.
    """
    storage = _active_storage(state.client)
    from kachery_core.store.check import check_and_report

    sys.exit(check_and_report(storage, list(uris) or None, prune_stale))


def _active_storage(client: Client) -> LocalStorage:
    """The directory on this machine that the active backend reads objects from."""
    from kachery_core.errors import UnsupportedOperation
    from kachery_core.store.local import LocalStorage

    transport = client.transport
    for attempt in (0, 1):
        for name in ("storage", "cache"):
            storage = getattr(transport, name, None)
            if isinstance(storage, LocalStorage):
                return storage
        if attempt == 0:
            transport.node_info()  # a node-backed backend finds its directory on connecting
    raise UnsupportedOperation(
        client.selection.name, "verify", "it keeps no storage on this machine to check"
    )


@cli.command("cat-file")
@click.argument("uri")
@click.option("--start", type=click.IntRange(min=0), default=0, help="First byte (default 0).")
@click.option(
    "--end",
    type=click.IntRange(min=0),
    default=None,
    help="Byte after the last (default: the end).",
)
@click.option(
    "--channel",
    type=CHANNEL,
    metavar="NAME",
    help="If the node lacks the file, it fetches it from this channel (default: KACHERY_CHANNEL).",
)
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


@cli.command("generate-node-id")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save the private key (default: beside the config file).",
)
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@pass_state
def generate_node_id(state: CliState, key_file: Optional[Path], force: bool) -> None:
    """Create a node key pair, print the node ID, and expect that node from now on."""
    from kachery_core.protocol.node_key import generate_key_file
    from kachery_core.settings.config import set_config_file_value

    config = state.client.config
    key_path = key_file or config.config_file.parent / "node-key.pem"
    node_id = generate_key_file(key_path, overwrite=force)
    set_config_file_value(config.config_file, "expected_node_id", node_id)
    click.echo(
        f"private key saved to {key_path} "
        f"(start a node with: kachery-daemon start --node-key {key_path})",
        err=True,
    )
    click.echo(f"expected_node_id recorded in {config.config_file}", err=True)
    click.echo(node_id)


@cli.command("version")
def version() -> None:
    """Print the version."""
    click.echo(f"{PROG} {__version__}")


@cli.command("info")
@pass_state
def info(state: CliState) -> None:
    """Show the active backend, why it was chosen, the node ID and the storage directory."""
    client = state.client
    selection = client.selection
    node = client.transport.node_info()
    rows = [
        ("backend", selection.name),
        ("chosen because", selection.reason),
        ("node id", node.node_id or "none (no node owns this storage)"),
        ("expected node id", client.config.expected_node_id or "any"),
        ("storage dir", node.storage_dir or "none"),
        (
            "config file",
            str(client.config.config_file)
            + ("" if client.config.config_file.exists() else " (absent)"),
        ),
    ]
    if node.address:
        rows.append(("node address", node.address))
    if node.daemon_version:
        rows.append(("node version", node.daemon_version))
    rows.extend(node.details.items())
    _print_table(rows)


@cli.command("config")
@pass_state
def config(state: CliState) -> None:
    """Show every setting with its value and where the value came from."""
    from kachery_core.settings.config import SETTINGS

    cfg = state.client.config
    for label, path in (
        ("system config file", cfg.system_config_file),
        ("config file", cfg.config_file),
    ):
        if path is not None:
            click.echo(f"# {label}: {path}" + ("" if path.exists() else " (absent)"))
    width = max(len(k) for k in SETTINGS)
    for key, resolved in cfg.items():
        value = "(unset)" if resolved.value is None else str(resolved.value)
        if SETTINGS[key].secret and resolved.value is not None:
            value = value[:4] + "..." + f" ({len(value)} characters)"
        click.echo(f"{key:<{width}}  {value}  [{resolved.source}; env {SETTINGS[key].env}]")


@cli.command("backends")
@click.option("--debug", "tracebacks", is_flag=True, help="Show broken plugins' tracebacks.")
@pass_state
def backends(state: CliState, tracebacks: bool) -> None:
    """List installed backends and the package that provides each, and broken plugins."""
    from kachery_client.backends.registry import get_registry

    registry = get_registry()
    rows = [
        (spec.name, f"{spec.package} {spec.version}  {spec.summary}")
        for spec in (registry.backends[n] for n in registry.names())
    ]
    rows.extend((name, f"BROKEN: {reason}") for name, reason in sorted(registry.broken.items()))
    rows.extend((name, f"REFUSED: {reason}") for name, reason in registry.refused)
    _print_table(rows)
    if tracebacks or state.debug:
        for name, text in sorted(registry.tracebacks.items()):
            click.echo(f"\n{name} is broken because:\n{text.rstrip()}", err=True)


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _size_or_none(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def main(
    argv: Optional[List[str]] = None, prog_name: str = PROG, command: click.Command = cli
) -> None:
    """Entry point: run the CLI and turn every failure into one line and an exit code.

    `command` is `cli`, or a short command made by `kachery_cli.aliases`.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        with _plugin_warnings_as_lines(debug):
            code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.UsageError as exc:
        hint = (
            f" (see '{prog_name} --help')"
            if exc.ctx is None
            else f" (see '{exc.ctx.command_path} --help')"
        )
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        _fail("aborted", 1)
    except KacheryError as exc:
        if debug:
            _print_traceback()
            _print_plugin_traceback(exc)
        _fail(str(exc), exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`kachery-client cat-file ... | head`): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:
        if debug:
            _print_traceback()
        where = f": {exc.filename!r}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", 1)
    except Exception as exc:
        if debug:
            raise
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug; rerun with --debug for the traceback)",
            1,
        )
    sys.exit(code or 0)


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


def _print_plugin_traceback(exc: KacheryError) -> None:
    """A broken backend's own failure: the plugin's traceback, recorded when it broke."""
    from kachery_client.backends.registry import BrokenBackendError

    if isinstance(exc, BrokenBackendError) and exc.plugin_traceback:
        click.echo(f"the plugin's own error:\n{exc.plugin_traceback.rstrip()}", err=True)


@contextmanager
def _plugin_warnings_as_lines(debug: bool) -> Iterator[None]:
    """Show a `KacheryPluginWarning` as one `Warning: ...` line on stderr (the plugin's
    traceback after it under --debug); other warnings are shown as Python shows them."""
    import warnings

    show_others = warnings.showwarning

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        from kachery_client.backends.registry import KacheryPluginWarning

        if not isinstance(message, KacheryPluginWarning):
            show_others(message, category, *args, **kwargs)
            return
        click.echo(f"Warning: {message}", err=True)
        if debug and message.plugin_traceback:
            click.echo(message.plugin_traceback.rstrip(), err=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = show_others


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)
