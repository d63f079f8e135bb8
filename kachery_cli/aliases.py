"""Short commands: `kachery-cat`, `kachery-load`, `kachery-store`, `kachery-link`.

Each is `kachery-client <command>` as a command of its own: its parameters are the
command's plus every global option of `kachery-client` (taken from the group itself, so
a new global option works here too), all parsed by click, so they may come anywhere on
the line.
"""

from __future__ import annotations

from typing import Any

import click

from .main import cli, main


def alias_command(name: str) -> click.Command:
    """`kachery-client NAME` with the global options merged into the command's own."""
    command = cli.commands[name]
    if command.callback is None or cli.callback is None:
        raise RuntimeError(f"kachery-client {name} has no callback")
    group_callback, command_callback = cli.callback, command.callback
    global_params = list(cli.params)
    clash = {p.name for p in global_params} & {p.name for p in command.params}
    if clash:
        raise RuntimeError(f"kachery-client {name} redefines global options {sorted(clash)}")
    global_names = [p.name for p in global_params if p.expose_value and p.name]

    def run(**values: Any) -> Any:
        ctx = click.get_current_context()
        ctx.invoke(group_callback, **{n: values.pop(n) for n in global_names})
        return ctx.invoke(command_callback, **values)

    return click.Command(
        name,
        params=[*command.params, *global_params],
        callback=run,
        help=command.help,
        short_help=command.short_help,
        context_settings=dict(cli.context_settings),
    )


def _run(command: str, prog: str) -> None:
    main(prog_name=prog, command=alias_command(command))


def cat_file() -> None:
    _run("cat-file", "kachery-cat")


def load_file() -> None:
    _run("load-file", "kachery-load")


def store_file() -> None:
    _run("store-file", "kachery-store")


def link_file() -> None:
    _run("link-file", "kachery-link")
