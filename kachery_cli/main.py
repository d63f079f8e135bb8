"""`kachery-client`: store, link, load and print files by their `sha1://` URI.

Only data goes to stdout (a URI, a path, file bytes); messages and progress go to
stderr. Errors are one line, `Error: ...`, with exit code 1 (2 for usage errors); a
traceback only with `--debug`.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

import click
from click.core import ParameterSource

from kachery_core import __version__
from kachery_core.errors import KacheryError

from . import help_text
from .pipe import reader_gone
from .state import PROG, CliState, Interrupted, ReaderGone


def with_global_options(group: click.Group, command: click.Command) -> click.Command:
    """`command` taking the group's global options too, anywhere among its own.

    A global option given after the subcommand wins over the same one given before it (as
    the later of two options does); the group's callback then runs again with the merged
    values, so a new global option needs no code here. An option the command defines
    itself (`backends --debug`) stays the command's.
    """
    if command.callback is None or group.callback is None:
        raise RuntimeError(f"{PROG} {command.name} has no callback")
    group_callback, command_callback = group.callback, command.callback
    own = {opt for p in command.params for opt in p.opts} | {p.name for p in command.params}
    extra = [p for p in group.params if p.name not in own and not set(p.opts) & own]
    names = [p.name for p in extra if p.expose_value and p.name]

    def run(**values: Any) -> Any:
        ctx = click.get_current_context()
        before = ctx.parent.params if ctx.parent is not None else {}
        merged = {
            n: values[n]
            if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE or n not in before
            else before[n]
            for n in names
        }
        for n in names:
            del values[n]
        for p in group.params:  # one the command took for itself: its value from before
            if p.expose_value and p.name and p.name not in merged:
                merged[p.name] = before.get(p.name, p.default)
        ctx.invoke(group_callback, **merged)
        try:
            return ctx.invoke(command_callback, **values)
        except BrokenPipeError as exc:
            raise ReaderGone() from exc
        except KeyboardInterrupt:
            raise Interrupted() from None

    return click.Command(
        command.name,
        params=[*command.params, *extra],
        callback=run,
        help=command.help,
        short_help=command.short_help,
        epilog=command.epilog,
        context_settings={**group.context_settings, **command.context_settings},
    )


class _Group(click.Group):
    """The `kachery-client` group: each command takes the global options after its own
    arguments as well (`kachery-client store-file a.bin --debug`), as the short aliases do."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in COMMANDS:
            load_command(cmd_name)
        command = super().get_command(ctx, cmd_name)
        return None if command is None else with_global_options(self, command)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole first paragraph (click cuts it with "...")."""
        rows = help_text.command_rows(self, ctx)
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _print_version(ctx: click.Context, _param: object, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG} {__version__}")
        ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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


COMMANDS: Dict[str, str] = {
    "store-file": "files:store_file",
    "link-file": "files:link_file",
    "load-file": "files:load_file",
    "ls": "listing:ls",
    "upload": "files:upload",
    "verify": "node_commands:verify",
    "cat-file": "files:cat_file",
    "generate-node-id": "node_commands:generate_node_id",
    "version": "node_commands:version",
    "info": "node_commands:info",
    "config": "node_commands:config",
    "backends": "node_commands:backends",
    "usage": "storage_commands:usage",
    "pin": "storage_commands:pin",
    "unpin": "storage_commands:unpin",
    "drop": "storage_commands:drop",
    "gc": "storage_commands:gc",
    "init-shared": "storage_commands:init_shared",
    "completion": "help_text:completion",
}
"""Each command's module and name in `kachery_cli`: a command's module is imported when the
command runs (or `--help` lists them all), so `load-file` does not pay for `ls` or `gc`."""


def load_command(name: str) -> click.Command:
    """Command `name` of the group, imported and added on first use (KeyError if unknown)."""
    command = cli.commands.get(name)
    if command is None:
        module_name, _, attr = COMMANDS[name].partition(":")
        command = getattr(importlib.import_module(f"{__package__}.{module_name}"), attr)
        command.epilog = command.epilog or help_text.epilog(name)
        cli.add_command(command, name)
    return command


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
            sys.stdout.flush()  # a closed pipe shows here, not in the flush at exit
    except click.UsageError as exc:
        hint = (
            f" (see '{prog_name} --help')"
            if exc.ctx is None
            else f" (see '{exc.ctx.command_path} --help')"
        )
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort as exc:
        # click turns a Ctrl-C outside a command (while parsing) into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _fail("interrupted", 130)
        _fail("aborted", 1)
    except Interrupted:
        if sys.stderr.isatty():
            click.echo(err=True)  # end the line the terminal's ^C is on
        _fail("interrupted", 130)  # the shell's convention for SIGINT: 128 + 2
    except KacheryError as exc:
        if debug:
            _print_traceback()
            _print_plugin_traceback(exc)
        _fail(str(exc), exc.exit_code)
    except (ReaderGone, BrokenPipeError):
        # The reader went away (`kachery-client cat-file ... | head`): not an error.
        reader_gone()
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
