"""Reading a TOML file (the client's config, a node's config) with one-line errors.

One reader for every config file, so each reports an unreadable or broken file the same
way: naming the file and the problem, never with a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional

from .errors import ConfigError


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
