"""The `kachery-client` program: `load-file URI` of an object already here is answered
before click and the command modules are imported; everything else goes to `main`.

Only that exact command line takes the fast path (`kachery_client.hit`), and only when
the answer is a plain hit in the embedded storage; otherwise `main` runs the command as
it always does, so output, errors and exit codes are those of the full path.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from .pipe import reader_gone

COMPLETION_ENV = "_KACHERY_CLIENT_COMPLETE"
"""Set by a shell asking click for completions: never a plain load-file."""


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    plain = len(args) == 2 and args[0] == "load-file" and not args[1].startswith("-")
    if plain and COMPLETION_ENV not in os.environ:
        _print_hit(args[1])
    from kachery_cli.main import main as full_main

    full_main(args)


def _print_hit(uri: str) -> None:
    """Print the hit's path and exit 0, as `main` would; return when it is no plain hit."""
    try:
        from kachery_client.hit import load_hit

        path = load_hit(uri)
        if path is None:
            return
        sys.stdout.write(path + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        reader_gone()
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        sys.exit(130)
    sys.exit(0)
