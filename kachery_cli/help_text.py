"""What `--help` shows beyond each command's own text: examples at the end of every
command's help, the group's list of commands with whole first lines, and the
`completion` command printing the shell completion script.

The examples live here, one table for every command, so a new command without examples
fails tests/cli/test_cli_conventions.py instead of shipping a help with none.
"""

from __future__ import annotations

import inspect
from typing import Dict, List, Optional, Tuple

import click

from .state import PROG

URI = "sha1://3f786850e387550fdab836ed7e6dc881de23001b/data.bin"
DIR_URI = "sha1dir://17fb38efa12b3f2e0fcf9c1efb7e10d0ee8a7bcd.recording"

EXAMPLES: Dict[str, List[str]] = {
    "store-file": [
        f"{PROG} store-file data.bin",
        f"{PROG} store-file -r recording/ --upload-to-channel lab",
    ],
    "link-file": [f"{PROG} link-file big.h5", f"{PROG} link-file -r /data/sessions/"],
    "load-file": [
        f"{PROG} load-file {URI} --dest copy.bin",
        f"{PROG} load-file -r {DIR_URI} --dest recording/",
    ],
    "cat-file": [f"{PROG} cat-file {URI} --start 0 --end 64 | xxd"],
    "ls": [f"{PROG} ls -r {DIR_URI}", f"{PROG} ls --json {DIR_URI}"],
    "upload": [f"{PROG} upload {URI} --channel lab"],
    "verify": [f"{PROG} verify", f"{PROG} verify {URI} --prune-stale"],
    "generate-node-id": [f"{PROG} generate-node-id --key-file ~/.kachery/node-key.pem"],
    "info": [f"{PROG} info", f"{PROG} info --profile lab"],
    "config": [f"{PROG} config", f"KACHERY_BACKEND=remote {PROG} config"],
    "backends": [f"{PROG} backends", f"{PROG} backends --debug"],
    "version": [f"{PROG} version"],
    "usage": [f"{PROG} usage", f"{PROG} usage --json"],
    "pin": [f"{PROG} pin {URI}", f"{PROG} pin {DIR_URI}"],
    "unpin": [f"{PROG} unpin {DIR_URI}"],
    "drop": [f"{PROG} drop {URI}", f"{PROG} drop {URI} --force"],
    "gc": [f"{PROG} gc --dry-run", f"{PROG} gc --max-size 50GiB"],
    "init-shared": [f"{PROG} init-shared /data/lab-kachery --group lab"],
    "completion": [
        f"{PROG} completion bash > ~/.local/share/bash-completion/completions/{PROG}",
        f"echo 'eval \"$({PROG} completion zsh)\"' >> ~/.zshrc",
    ],
}


def epilog(name: str) -> Optional[str]:
    """The examples of command `name`, kept as lines by click (`\\b`). None for a command
    missing from EXAMPLES: its help then fails the test, the CLI still runs."""
    lines = EXAMPLES.get(name)
    if not lines:
        return None
    title = "Example:" if len(lines) == 1 else "Examples:"
    return "\n".join(["\b", title, *(f"  {line}" for line in lines)])


def first_paragraph(command: click.Command) -> str:
    """The command's first paragraph, whole: the group's help lists it uncut."""
    if command.short_help:
        return command.short_help
    text = inspect.cleandoc(command.help or "").split("\f")[0]
    return " ".join(text.split("\n\n")[0].split())


def command_rows(group: click.Group, ctx: click.Context) -> List[Tuple[str, str]]:
    """(name, first paragraph) of each visible command of `group`."""
    rows = []
    for name in group.list_commands(ctx):
        command: Optional[click.Command] = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            rows.append((name, first_paragraph(command)))
    return rows


SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the script that makes SHELL complete kachery-client's commands and options.

    Install it once: for bash, save it where bash-completion looks (or `eval` it in
    ~/.bashrc); for zsh, `eval` it in ~/.zshrc; for fish, save it as
    ~/.config/fish/completions/kachery-client.fish.
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # click has all of SHELLS
    root = click.get_current_context().find_root().command  # the kachery-client group
    var = "_" + PROG.replace("-", "_").upper() + "_COMPLETE"  # what click's main reads
    click.echo(completer(root, {}, PROG, var).source())
