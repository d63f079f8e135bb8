"""TOML for config files: read with one-line errors, and edited in place by hand.

Reading: one reader for every config file (the client's, a node's), so each reports an
unreadable or broken file the same way, naming the file and the problem, never with a
traceback.

Writing: kachery edits a user's config file in place (`generate-node-id` records the node
ID), so comments and layout must survive; a TOML library that round-trips them would be a
new dependency for a dozen lines. The caller re-parses the result and compares it with
what it meant to write, so an edit this cannot do cleanly is refused, never half-done.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from kachery_core.errors import ConfigError


def read_toml_file(path: Path, what: str, hint: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Parse the TOML file at `path`; None when it does not exist.

    `what` names the file in messages ("config file", "node config file"); `hint` is the
    advice shown when it is not valid TOML.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}", hint) from None


_ESCAPES: Dict[str, str] = {
    "\\": "\\\\",
    '"': '\\"',
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def basic_string(value: str) -> str:
    """`value` as a TOML basic string: quoted, with backslash, quote and controls escaped."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def set_top_level_string(text: str, key: str, value: str, drop: Iterable[str] = ()) -> str:
    """`text` with `key = "value"` at the top level (before the first [table]).

    The first line that sets `key` (or a key in `drop`, another spelling of it) is
    replaced, later ones removed; without one, the line goes first in the file.
    """
    names = "|".join(re.escape(name) for name in (key, *drop))
    sets_key = re.compile(rf"""\s*(?:{names}|"(?:{names})"|'(?:{names})')\s*=""")
    line = f"{key} = {basic_string(value)}\n"
    out = []
    placed = False
    top_level = True
    # TOML ends lines at "\n" only (str.splitlines would also split at "\x85" and others)
    for each in re.findall(r"[^\n]*\n|[^\n]+$", text):
        if each.lstrip().startswith("["):
            top_level = False
        if top_level and sets_key.match(each):
            if not placed:
                out.append(line)
                placed = True
            continue
        out.append(each)
    if not placed:
        out.insert(0, line)
    return "".join(out)
