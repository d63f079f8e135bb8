"""How a raw setting becomes its typed value: one parser per kind of setting.

Each takes what a config file, an environment variable or a keyword gave (TOML types or
strings) and returns the typed value, or raises ValueError saying what was expected; the
caller (`kachery_core.settings.config`) adds where the bad value came from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable


def parse_path(value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError("expected a directory path")
    try:
        return Path(os.path.expandvars(str(value))).expanduser().absolute()
    except RuntimeError:  # `~name` of a user this machine does not know
        raise ValueError("expected a path; '~' names no home directory here") from None


def parse_port(value: Any) -> int:
    text = str(value).strip()
    if (
        isinstance(value, bool)
        or not re.fullmatch(r"[0-9]{1,5}", text)
        or not 0 < int(text) < 65536
    ):
        raise ValueError("expected a port number from 1 to 65535")
    return int(text)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1 or 0 (or true/false)")


def parse_host(value: Any) -> str:
    text = str(value).strip()
    if not text or not re.fullmatch(r"[A-Za-z0-9.\-:\[\]_]+", text):
        raise ValueError("expected a host name or IP address")
    return text.strip("[]")


NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
"""A channel's name, the same rule for the client's `channel` and a node's [channels.NAME]."""


def name_parser(pattern: re.Pattern[str], expected: str) -> Callable[[Any], str]:
    """A parser for names (backends, profiles, channels): one pattern, one message."""

    def parse(value: Any) -> str:
        text = str(value).strip()
        if not pattern.fullmatch(text):
            raise ValueError(expected)
        return text

    return parse


parse_name = name_parser(re.compile(NAME), "expected a backend name such as local, offline or http")
parse_profile = name_parser(
    re.compile(NAME), "expected a profile name: letters, digits, '.', '_' or '-'"
)
parse_channel = name_parser(
    CHANNEL_NAME, "expected a channel name: letters, digits, '.', '_' or '-'"
)


def parse_seconds(value: Any) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise ValueError("expected a number of seconds above 0 (at most 86400)")
    return seconds


def parse_grace_seconds(value: Any) -> float:
    """Seconds from 0 (no grace) to a week."""
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds <= 7 * 86400:
        raise ValueError("expected a number of seconds from 0 to 604800")
    return seconds


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: Any) -> int:
    """A size in bytes: a number of bytes, or one with a unit (`50GiB`, `1.5 TB`, `500M`;
    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB and K/M/G/T powers of 1024)."""
    expected = "expected a size such as 50GiB, 500MB or 1000000 (bytes)"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(expected)
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(expected)
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_token(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_\-.~+/=]{16,512}", text):
        raise ValueError("expected an access token from `kachery-daemon token create`")
    return text


def parse_node_id(value: Any) -> str:
    text = str(value).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError("expected a node ID: 64 hexadecimal digits")
    return text
