"""The one place where settings are resolved.

Precedence, lowest first: built-in defaults < system config file < user config file <
the chosen profile < environment < explicit arguments (CLI flags or
`kachery_client.Client(...)` keywords). Every resolved value remembers where it came
from, so `kachery-client config` can show it.

The user file is TOML at `$KACHERY_CONFIG`, else `<user config dir>/kachery/config.toml`
(`~/.config/kachery/config.toml` on Linux); the system file (a lab's admin rolls it out)
is at `$KACHERY_SYSTEM_CONFIG`, else `/etc/kachery/config.toml`. Both look alike:

    storage_dir = "/data/kachery-storage"
    profile = "lab"                    # the profile used unless another is chosen

    [profiles.lab]                     # chosen with --profile lab or KACHERY_PROFILE=lab
    daemon_host = "kachery.lab.example.org"

    [plugins.mirror]                   # settings a plugin reads with plugin_settings()
    url = "http://files.lab.example.org/kachery"
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from .atomic_file import write_atomically
from .errors import ConfigError
from .toml_file import read_toml_file

CONFIG_ENV = "KACHERY_CONFIG"
SYSTEM_CONFIG_ENV = "KACHERY_SYSTEM_CONFIG"
DEFAULT_SYSTEM_CONFIG = "/etc/kachery/config.toml"


def _parse_path(value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError("expected a directory path")
    return Path(os.path.expandvars(str(value))).expanduser().absolute()


def _parse_port(value: Any) -> int:
    text = str(value).strip()
    if (
        isinstance(value, bool)
        or not re.fullmatch(r"[0-9]{1,5}", text)
        or not 0 < int(text) < 65536
    ):
        raise ValueError("expected a port number from 1 to 65535")
    return int(text)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1 or 0 (or true/false)")


def _parse_host(value: Any) -> str:
    text = str(value).strip()
    if not text or not re.fullmatch(r"[A-Za-z0-9.\-:\[\]_]+", text):
        raise ValueError("expected a host name or IP address")
    return text.strip("[]")


NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
"""A channel's name, the same rule for the client's `channel` and a node's [channels.NAME]."""


def _name_parser(pattern: re.Pattern[str], expected: str) -> Callable[[Any], str]:
    """A parser for names (backends, profiles, channels): one pattern, one message."""

    def parse(value: Any) -> str:
        text = str(value).strip()
        if not pattern.fullmatch(text):
            raise ValueError(expected)
        return text

    return parse


_parse_name = _name_parser(
    re.compile(NAME), "expected a backend name such as local, offline or http"
)
_parse_profile = _name_parser(
    re.compile(NAME), "expected a profile name: letters, digits, '.', '_' or '-'"
)
_parse_channel = _name_parser(
    CHANNEL_NAME, "expected a channel name: letters, digits, '.', '_' or '-'"
)


def _parse_seconds(value: Any) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise ValueError("expected a number of seconds above 0 (at most 86400)")
    return seconds


def _parse_token(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_\-.~+/=]{16,512}", text):
        raise ValueError("expected an access token from `kachery-daemon token create`")
    return text


def _parse_node_id(value: Any) -> str:
    text = str(value).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError("expected a node ID: 64 hexadecimal digits")
    return text


@dataclass(frozen=True)
class Setting:
    """One setting: its config-file key, environment variable, default and parser."""

    key: str
    env: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False
    """Shown masked by `kachery-client config`."""


SETTINGS: Dict[str, Setting] = {
    s.key: s
    for s in [
        Setting(
            "profile",
            "KACHERY_PROFILE",
            None,
            _parse_profile,
            "Named profile ([profiles.NAME] in a config file) whose settings apply.",
        ),
        Setting(
            "transport",
            "KACHERY_TRANSPORT",
            None,
            _parse_name,
            "Backend to use (see `kachery-client backends`); unset: chosen automatically.",
        ),
        Setting(
            "storage_dir",
            "KACHERY_STORAGE_DIR",
            "~/kachery-storage",
            _parse_path,
            "Storage directory: the embedded backend's store, or where a node's is mounted.",
        ),
        Setting(
            "daemon_host",
            "KACHERY_DAEMON_HOST",
            "localhost",
            _parse_host,
            "Host of the node. A host other than this machine selects the remote backend.",
        ),
        Setting(
            "daemon_port",
            "KACHERY_DAEMON_PORT",
            20431,
            _parse_port,
            "HTTP port of the node.",
        ),
        Setting(
            "temp_dir",
            "KACHERY_TEMP_DIR",
            None,
            _parse_path,
            "Staging directory for files being written; unset: <storage_dir>/tmp.",
        ),
        Setting(
            "keep_temp_files",
            "KACHERY_KEEP_TEMP_FILES",
            False,
            _parse_bool,
            "1: keep staging files of failed or interrupted operations, for debugging.",
        ),
        Setting(
            "offline_storage_dir",
            "KACHERY_OFFLINE_STORAGE_DIR",
            None,
            _parse_path,
            "Set: offline mode, files are only read from this directory.",
        ),
        Setting(
            "expected_node_id",
            "KACHERY_EXPECTED_NODE_ID",
            None,
            _parse_node_id,
            "Node ID the client insists on (set by generate-node-id).",
        ),
        Setting(
            "daemon_tls",
            "KACHERY_DAEMON_TLS",
            False,
            _parse_bool,
            "1: talk to the node over HTTPS (a node started with --tls-cert, or behind a TLS proxy).",
        ),
        Setting(
            "tls_ca_file",
            "KACHERY_TLS_CA_FILE",
            None,
            _parse_path,
            "CA certificate(s) to trust for the node's HTTPS; unset: the system's CAs.",
        ),
        Setting(
            "grpc_port",
            "KACHERY_GRPC_PORT",
            20432,
            _parse_port,
            "gRPC port of the node (the grpc backend).",
        ),
        Setting(
            "auth_token",
            "KACHERY_AUTH_TOKEN",
            None,
            _parse_token,
            "Access token from `kachery-daemon token create`, for a node whose client-auth file you cannot read.",
            secret=True,
        ),
        Setting(
            "auth_token_file",
            "KACHERY_AUTH_TOKEN_FILE",
            None,
            _parse_path,
            "File holding the access token (used when auth_token is unset).",
        ),
        Setting(
            "auth_code_file",
            "KACHERY_AUTH_CODE_FILE",
            None,
            _parse_path,
            "The node's rotating client-auth file; unset: <storage_dir>/client-auth.",
        ),
        Setting(
            "connect_timeout",
            "KACHERY_CONNECT_TIMEOUT",
            5.0,
            _parse_seconds,
            "Seconds to wait for a connection to the node.",
        ),
        Setting(
            "read_timeout",
            "KACHERY_READ_TIMEOUT",
            300.0,
            _parse_seconds,
            "Seconds to wait for the node's next bytes before giving up on it.",
        ),
        Setting(
            "channel",
            "KACHERY_CHANNEL",
            None,
            _parse_channel,
            "Channel the node fetches missing files from (one of the node's [channels.NAME]).",
        ),
        Setting(
            "channel_timeout",
            "KACHERY_CHANNEL_TIMEOUT",
            60.0,
            _parse_seconds,
            "Seconds the node waits for another node of the channel to provide a missing file.",
        ),
        Setting(
            "fsync",
            "KACHERY_FSYNC",
            False,
            _parse_bool,
            "1: flush every object to disk before it appears (survives power loss; slower).",
        ),
    ]
}


@dataclass(frozen=True)
class Resolved:
    value: Any
    source: str


class Config:
    """Resolved settings. Read them as attributes; `source(key)` says where each came from."""

    def __init__(
        self,
        values: Dict[str, Resolved],
        config_file: Path,
        system_config_file: Optional[Path] = None,
        plugins: Optional[Dict[str, Dict[str, Any]]] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._values = values
        self.config_file = config_file
        self.system_config_file = system_config_file
        self._plugins = plugins or {}
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        """The environment these settings were resolved from; plugins read their variables here."""

    def plugin_settings(self, name: str) -> Dict[str, Any]:
        """The `[plugins.NAME]` table, merged: system file < user file < the chosen profile.

        Plugins validate their own keys; kachery passes the values as TOML gave them.
        """
        return dict(self._plugins.get(name, {}))

    def get(self, key: str) -> Any:
        return self._values[key].value

    def source(self, key: str) -> str:
        return self._values[key].source

    def items(self) -> list[tuple[str, Resolved]]:
        return list(self._values.items())

    def replace(self, **overrides: Any) -> Config:
        """A copy with some values set explicitly (used by backends for derived defaults)."""
        values = dict(self._values)
        for key, value in overrides.items():
            values[key] = Resolved(value, "derived")
        return Config(
            values, self.config_file, self.system_config_file, self._plugins, self.environ
        )

    profile = property(lambda self: self.get("profile"))
    transport = property(lambda self: self.get("transport"))
    storage_dir = property(lambda self: self.get("storage_dir"))
    daemon_host = property(lambda self: self.get("daemon_host"))
    daemon_port = property(lambda self: self.get("daemon_port"))
    temp_dir = property(lambda self: self.get("temp_dir"))
    keep_temp_files = property(lambda self: self.get("keep_temp_files"))
    offline_storage_dir = property(lambda self: self.get("offline_storage_dir"))
    expected_node_id = property(lambda self: self.get("expected_node_id"))
    fsync = property(lambda self: self.get("fsync"))
    grpc_port = property(lambda self: self.get("grpc_port"))
    daemon_tls = property(lambda self: self.get("daemon_tls"))
    tls_ca_file = property(lambda self: self.get("tls_ca_file"))
    auth_token_file = property(lambda self: self.get("auth_token_file"))
    auth_code_file = property(lambda self: self.get("auth_code_file"))
    connect_timeout = property(lambda self: self.get("connect_timeout"))
    read_timeout = property(lambda self: self.get("read_timeout"))
    channel = property(lambda self: self.get("channel"))
    channel_timeout = property(lambda self: self.get("channel_timeout"))

    @property
    def auth_token(self) -> Optional[str]:
        """The access token: `auth_token`, else the contents of `auth_token_file`, else None."""
        token = self.get("auth_token")
        if token is not None or self.auth_token_file is None:
            return token
        path = Path(self.auth_token_file)
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read auth_token_file {path}: {exc.strerror}",
                f"fix the path ({self.source('auth_token_file')}) or set KACHERY_AUTH_TOKEN",
            ) from None
        try:
            return _parse_token(text)
        except ValueError as exc:
            raise ConfigError(f"auth_token_file {path} does not hold a token", str(exc)) from None


def default_config_path(env: Mapping[str, str]) -> Path:
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    from .paths import user_config_dir

    return user_config_dir() / "config.toml"


def system_config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get(SYSTEM_CONFIG_ENV) or DEFAULT_SYSTEM_CONFIG).expanduser()


def read_config_file(path: Path) -> Dict[str, Any]:
    """Parse a TOML config file; a missing file is an empty config."""
    hint = f"fix it, or point {CONFIG_ENV} at another file"
    return read_toml_file(path, "config file", hint) or {}


@dataclass(frozen=True)
class _Layer:
    """The plain settings of one place (a file's top level, or one profile in a file)."""

    values: Dict[str, Any]
    source: str
    plugins: Dict[str, Dict[str, Any]]


class _ConfigFile:
    """A parsed, validated config file: top-level settings, profiles and plugin tables."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.label = f"{kind} {path}"
        data = read_config_file(path)
        self.top = self._layer(data, self.label, f"{path}", allow_profile=True)
        profiles = data.get("profiles", {})
        if not isinstance(profiles, dict):
            raise ConfigError(f"[profiles] in {path} must be a table of tables")
        self.profiles: Dict[str, _Layer] = {}
        for name, table in profiles.items():
            if not isinstance(table, dict):
                raise ConfigError(f"profile {name!r} in {path} must be a table ([profiles.{name}])")
            self.profiles[name] = self._layer(
                table, f"profile {name} in {path}", f"[profiles.{name}] in {path}", False
            )

    def _layer(self, table: Dict[str, Any], source: str, where: str, allow_profile: bool) -> _Layer:
        values: Dict[str, Any] = {}
        plugins: Dict[str, Dict[str, Any]] = {}
        for key, raw in table.items():
            if key == "plugins":
                if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
                    raise ConfigError(f"plugins in {where} must hold tables: [plugins.NAME]")
                plugins = raw
                continue
            if key == "profiles" and allow_profile:
                continue
            if key not in SETTINGS or (key == "profile" and not allow_profile):
                known = [k for k in SETTINGS if allow_profile or k != "profile"]
                raise ConfigError(
                    f"unknown setting {key!r} in {where}",
                    "known settings: " + ", ".join(known + ["[profiles.NAME]", "[plugins.NAME]"]),
                )
            try:  # every value is checked, even ones the environment overrides
                SETTINGS[key].parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid value {raw!r} for {key} in {where}", str(exc)) from None
            values[key] = raw
        return _Layer(values, source, plugins)


def resolve_config(
    explicit: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
    explicit_source: str = "command line",
) -> Config:
    """Resolve every setting from defaults, config files, profile, environment and `explicit`.

    Lowest first: default < system file < user file < the chosen profile < environment <
    explicit. The profile is chosen by `explicit`, else `KACHERY_PROFILE`, else `profile`
    in the user file, else in the system file; it may be defined in either file (the user
    file's keys win).
    """
    env = os.environ if env is None else env
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    for key in explicit:
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}", "known settings: " + ", ".join(SETTINGS))
    system = _ConfigFile(system_config_path(env), "system config file")
    user = _ConfigFile(default_config_path(env), "config file")
    layers = [system.top, user.top]
    profile = _chosen_profile(explicit, env, layers)
    if profile is not None:
        defined = [f.profiles[profile] for f in (system, user) if profile in f.profiles]
        if not defined:
            names = sorted(set(system.profiles) | set(user.profiles))
            raise ConfigError(
                f"unknown profile {profile!r} (chosen by {profile_source(explicit, env, layers)})",
                f"profiles defined in {user.path} and {system.path}: {', '.join(names) or 'none'}",
            )
        layers.extend(defined)
    values: Dict[str, Resolved] = {}
    for key, setting in SETTINGS.items():
        if key in explicit:
            raw, source, where = explicit[key], explicit_source, f"{explicit_source} ({key})"
        elif env.get(setting.env):
            raw, source = env[setting.env], f"environment {setting.env}"
            where = setting.env
        else:
            layer = next((lay for lay in reversed(layers) if key in lay.values), None)
            if layer is None:
                default = setting.default
                parsed = None if default is None else setting.parse(default)
                values[key] = Resolved(parsed, "default")
                continue
            raw, source, where = layer.values[key], layer.source, f"{key} in {layer.source}"
        try:
            values[key] = Resolved(setting.parse(raw), source)
        except ValueError as exc:
            raise ConfigError(f"invalid value {raw!r} for {where}", str(exc)) from None
    plugins: Dict[str, Dict[str, Any]] = {}
    for layer in layers:
        for name, table in layer.plugins.items():
            plugins.setdefault(name, {}).update(table)
    return Config(values, user.path, system.path, plugins, env)


def _chosen_profile(
    explicit: Mapping[str, Any], env: Mapping[str, str], layers: List[_Layer]
) -> Optional[str]:
    raw = explicit.get("profile") or env.get("KACHERY_PROFILE")
    if raw is None:
        raw = next(
            (lay.values["profile"] for lay in reversed(layers) if "profile" in lay.values), None
        )
    return None if raw is None else str(raw).strip()


def profile_source(
    explicit: Mapping[str, Any], env: Mapping[str, str], layers: List[_Layer]
) -> str:
    if explicit.get("profile"):
        return "--profile"
    if env.get("KACHERY_PROFILE"):
        return "KACHERY_PROFILE"
    return next(f"profile in {lay.source}" for lay in reversed(layers) if "profile" in lay.values)


def set_config_file_value(path: Path, key: str, value: str) -> None:
    """Set a top-level string key in a TOML config file, keeping everything else as it is."""
    setting = SETTINGS[key]
    setting.parse(value)
    text = path.read_text() if path.exists() else ""
    # Only the top level (before the first [table]) holds plain settings.
    table = re.search(r"^\s*\[", text, re.MULTILINE)
    head, tail = (text[: table.start()], text[table.start() :]) if table else (text, "")
    line = f'{key} = "{value}"'
    pattern = re.compile(rf"^{re.escape(key)}\s*=.*$", re.MULTILINE)
    head = pattern.sub(line, head, count=1) if pattern.search(head) else line + "\n" + head
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (head + tail).encode(), mode=None, check=read_config_file)
