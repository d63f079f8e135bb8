"""Short commands: `kachery-cat`, `kachery-load`, `kachery-store`, `kachery-link`.

Each is `kachery-client <command>` as a command of its own: its parameters are the
command's plus every global option of `kachery-client` (taken from the group itself, so
a new global option works here too), all parsed by click, so they may come anywhere on
the line.
"""

from __future__ import annotations

import click

from .main import cli, load_command, main, with_global_options


def alias_command(name: str) -> click.Command:
    """`kachery-client NAME` with the global options merged into the command's own."""
    command = load_command(name)
    clash = {p.name for p in cli.params} & {p.name for p in command.params}
    if clash:
        raise RuntimeError(f"kachery-client {name} redefines global options {sorted(clash)}")
    return with_global_options(cli, command)


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
