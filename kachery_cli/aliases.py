"""Short commands: `kachery-cat`, `kachery-load`, `kachery-store`, `kachery-link`.

Each is `kachery-client <command>`; global options (`--transport`, `--debug`) may be
given anywhere on the line.
"""

from __future__ import annotations

import sys
from typing import List

from .main import main


def _run(command: str, prog: str) -> None:
    args = sys.argv[1:]
    global_args: List[str] = []
    rest: List[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--debug" or arg.startswith("--transport="):
            global_args.append(arg)
        elif arg == "--transport" and i + 1 < len(args):
            global_args += [arg, args[i + 1]]
            i += 1
        else:
            rest.append(arg)
        i += 1
    main([*global_args, command, *rest], prog_name=prog)


def cat_file() -> None:
    _run("cat-file", "kachery-cat")


def load_file() -> None:
    _run("load-file", "kachery-load")


def store_file() -> None:
    _run("store-file", "kachery-store")


def link_file() -> None:
    _run("link-file", "kachery-link")
