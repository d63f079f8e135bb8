"""The node's config file: which channels it belongs to, and how to reach their buckets.

TOML, given by `kachery-daemon start --config FILE`, else `<storage_dir>/kachery-node.toml`
when that exists. Only `[channels.NAME]` tables are allowed, each checked key by key, so a
typo is an error naming the file, the channel and the key instead of a silent default:

    [channels.lab]
    bucket = "lab-kachery"
    prefix = "shared/"                   # objects at shared/sha1/aa/bb/cc/<sha1>
    endpoint_url = "http://127.0.0.1:8333"   # leave out for AWS
    provide = true                       # upload files this node holds when asked
    connect_timeout = 3                  # seconds per connection attempt (default 3)
    read_timeout = 60                    # seconds per answer or body read (default 60)

Nothing here imports boto3: reading the config must stay cheap and work without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from kachery_core.errors import ConfigError
from kachery_core.settings.config import CHANNEL_NAME
from kachery_core.settings.toml import read_toml_file

NODE_CONFIG_NAME = "kachery-node.toml"
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class ChannelConfig:
    """One `[channels.NAME]` table, validated."""

    name: str
    bucket: str
    prefix: str = ""
    endpoint_url: Optional[str] = None
    region: Optional[str] = None
    aws_profile: Optional[str] = None
    request: bool = True
    """This node may ask the channel for files nobody uploaded (writes request objects)."""
    provide: bool = False
    """This node answers requests with files it holds."""
    poll_seconds: float = 2.0
    max_parallel: int = 4
    connect_timeout: float = 3.0
    """Seconds to wait for a TCP connection to the store: an unreachable store fails fast."""
    read_timeout: float = 60.0
    """Seconds to wait for each answer (and each read of a body) of the store."""
    source: str = ""
    """The config file it came from, for messages."""

    @property
    def endpoint(self) -> str:
        """Where the bucket is, as messages show it."""
        if self.endpoint_url:
            return self.endpoint_url
        return f"AWS S3 ({self.region or 'default region'})"


@dataclass(frozen=True)
class NodeConfig:
    path: Optional[Path]
    channels: Dict[str, ChannelConfig] = field(default_factory=dict)


def load_node_config(explicit: Optional[Path], storage_dir: Path) -> NodeConfig:
    """Read `explicit` (which must exist), else `<storage_dir>/kachery-node.toml` if present."""
    path = explicit if explicit is not None else storage_dir / NODE_CONFIG_NAME
    data = read_toml_file(path, "node config file")
    if data is None:
        if explicit is None:
            return NodeConfig(None)
        raise ConfigError(f"node config file {path} does not exist", "check --config")
    return parse_node_config(data, path)


def parse_node_config(data: Mapping[str, Any], path: Path) -> NodeConfig:
    for key in data:
        if key != "channels":
            raise ConfigError(
                f"unknown key {key!r} in node config file {path}",
                "the file holds only [channels.NAME] tables",
            )
    tables = data.get("channels", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"channels in node config file {path} must be tables: [channels.NAME]")
    channels: Dict[str, ChannelConfig] = {}
    for name, table in tables.items():
        where = f"node config file {path}, channel {name!r}"
        if not CHANNEL_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: bad channel name", "use letters, digits, '.', '_' or '-' (64 at most)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table ([channels.{name}])")
        channels[name] = _channel(name, table, where, str(path))
    return NodeConfig(path, channels)


def _channel(name: str, table: Mapping[str, Any], where: str, source: str) -> ChannelConfig:
    values: Dict[str, Any] = {}
    for key, raw in table.items():
        parse = _KEYS.get(key)
        if parse is None:
            raise ConfigError(
                f"{where}: unknown key {key!r}", "known keys: " + ", ".join(sorted(_KEYS))
            )
        try:
            values[key] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: key {key!r}: {exc}, not {raw!r}") from None
    if "bucket" not in values:
        raise ConfigError(f"{where}: key 'bucket' is missing", "name the channel's bucket")
    return ChannelConfig(name=name, source=source, **values)


def _bucket(value: Any) -> str:
    if not isinstance(value, str) or not BUCKET_NAME.fullmatch(value):
        raise ValueError("expected a bucket name (3-63 lowercase letters, digits, '.', '-')")
    return value


def _prefix(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if value.startswith("/") or (value and not value.endswith("/")):
        raise ValueError("expected a key prefix ending in '/' and not starting with it")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


def _word(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
        raise ValueError("expected a name (letters, digits, '.', '_', '-')")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise ValueError("expected a number of seconds above 0 (at most 3600)")
    return float(value)


def _parallel(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise ValueError("expected a whole number from 1 to 64")
    return value


_KEYS: Dict[str, Callable[[Any], Any]] = {
    "bucket": _bucket,
    "prefix": _prefix,
    "endpoint_url": _url,
    "region": _word,
    "aws_profile": _word,
    "request": _bool,
    "provide": _bool,
    "poll_seconds": _seconds,
    "max_parallel": _parallel,
    "connect_timeout": _seconds,
    "read_timeout": _seconds,
}
