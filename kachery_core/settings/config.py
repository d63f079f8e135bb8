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

A setting may have an older second spelling, accepted everywhere: `backend` is also
`transport` (config key, `Client(transport=...)`) and `KACHERY_TRANSPORT`. The
environment's own name wins when both variables are set; both keys in one table of a
file is an error, as neither could be said to win.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from kachery_core.atomic_file import write_atomically
from kachery_core.errors import ConfigError
from kachery_core.secret_files import warn_if_exposed
from kachery_core.settings.toml import read_toml_file

CONFIG_ENV = "KACHERY_CONFIG"
SYSTEM_CONFIG_ENV = "KACHERY_SYSTEM_CONFIG"
DEFAULT_SYSTEM_CONFIG = "/etc/kachery/config.toml"


def _parse_path(value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError("expected a directory path")
    try:
        return Path(os.path.expandvars(str(value))).expanduser().absolute()
    except RuntimeError:  # `~name` of a user this machine does not know
        raise ValueError("expected a path; '~' names no home directory here") from None


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


T = TypeVar("T")


class Setting(Generic[T]):
    """One setting: config-file key, environment variable, default, parser and help.

    Declared in `Config`'s body, where it is also the typed attribute that reads the
    resolved value (`config.storage_dir` is a `Path`), so mypy checks every reader.
    """

    def __init__(
        self,
        env: str,
        default: Any,
        parse: Callable[[Any], T],
        help: str,
        *,
        secret: bool = False,
        alt_key: Optional[str] = None,
        alt_env: Optional[str] = None,
        key: str = "",
    ) -> None:
        self.key = key
        self.env = env
        self.default = default
        """The raw default (parsed like any other value); None: unset."""
        self.parse = parse
        self.help = help
        self.secret = secret
        """Shown masked by `kachery-client config`."""
        self.alt_key = alt_key
        """Another accepted spelling of the key in config files (and `Client(...)` keywords)."""
        self.alt_env = alt_env
        """Another accepted environment variable; `env` wins when both are set."""

    def __set_name__(self, owner: type, name: str) -> None:
        if not self.key:
            self.key = name

    @overload
    def __get__(self, config: None, owner: type) -> Setting[T]: ...

    @overload
    def __get__(self, config: Config, owner: type) -> T: ...

    def __get__(self, config: Optional[Config], owner: type) -> Union[T, Setting[T]]:
        if config is None:
            return self
        value: T = config.get(self.key)
        return value

    def __set__(self, config: Config, value: Any) -> None:
        raise AttributeError(f"{self.key} is read-only; use Config.replace({self.key}=...)")


@dataclass(frozen=True)
class Resolved:
    value: Any
    source: str


class Config:
    """Resolved settings, one typed attribute each; `source(key)` says where each came from."""

    profile = Setting[Optional[str]](
        "KACHERY_PROFILE",
        None,
        _parse_profile,
        "Named profile ([profiles.NAME] in a config file) whose settings apply.",
    )
    backend = Setting[Optional[str]](
        "KACHERY_BACKEND",
        None,
        _parse_name,
        "Backend to use (see `kachery-client backends`); unset: chosen automatically.",
        alt_key="transport",
        alt_env="KACHERY_TRANSPORT",
    )
    storage_dir = Setting[Path](
        "KACHERY_STORAGE_DIR",
        "~/kachery-storage",
        _parse_path,
        "Storage directory: the embedded backend's store, or where a node's is mounted.",
    )
    daemon_host = Setting[str](
        "KACHERY_DAEMON_HOST",
        "localhost",
        _parse_host,
        "Host of the node. A host other than this machine selects the remote backend.",
    )
    daemon_port = Setting[int](
        "KACHERY_DAEMON_PORT",
        20431,
        _parse_port,
        "HTTP port of the node.",
    )
    temp_dir = Setting[Optional[Path]](
        "KACHERY_TEMP_DIR",
        None,
        _parse_path,
        "Staging directory for files being written; unset: <storage_dir>/tmp.",
    )
    keep_temp_files = Setting[bool](
        "KACHERY_KEEP_TEMP_FILES",
        False,
        _parse_bool,
        "1: keep staging files of failed or interrupted operations, for debugging.",
    )
    offline_storage_dir = Setting[Optional[Path]](
        "KACHERY_OFFLINE_STORAGE_DIR",
        None,
        _parse_path,
        "Set: offline mode, files are only read from this directory.",
    )
    expected_node_id = Setting[Optional[str]](
        "KACHERY_EXPECTED_NODE_ID",
        None,
        _parse_node_id,
        "Node ID the client insists on (set by generate-node-id).",
    )
    daemon_tls = Setting[bool](
        "KACHERY_DAEMON_TLS",
        False,
        _parse_bool,
        "1: talk to the node over HTTPS (a node started with --tls-cert, or behind a TLS proxy).",
    )
    tls_ca_file = Setting[Optional[Path]](
        "KACHERY_TLS_CA_FILE",
        None,
        _parse_path,
        "CA certificate(s) to trust for the node's HTTPS; unset: the system's CAs.",
    )
    grpc_port = Setting[int](
        "KACHERY_GRPC_PORT",
        20432,
        _parse_port,
        "gRPC port of the node (the grpc backend).",
    )
    _auth_token = Setting[Optional[str]](
        "KACHERY_AUTH_TOKEN",
        None,
        _parse_token,
        "Access token from `kachery-daemon token create`, for a node whose client-auth file you cannot read.",
        secret=True,
        key="auth_token",
    )
    """The `auth_token` setting itself; read `auth_token`, which falls back to the file."""
    auth_token_file = Setting[Optional[Path]](
        "KACHERY_AUTH_TOKEN_FILE",
        None,
        _parse_path,
        "File holding the access token (used when auth_token is unset).",
    )
    auth_code_file = Setting[Optional[Path]](
        "KACHERY_AUTH_CODE_FILE",
        None,
        _parse_path,
        "The node's rotating client-auth file; unset: <storage_dir>/client-auth.",
    )
    connect_timeout = Setting[float](
        "KACHERY_CONNECT_TIMEOUT",
        5.0,
        _parse_seconds,
        "Seconds to wait for a connection to the node.",
    )
    read_timeout = Setting[float](
        "KACHERY_READ_TIMEOUT",
        300.0,
        _parse_seconds,
        "Seconds to wait for the node's next bytes before giving up on it.",
    )
    channel = Setting[Optional[str]](
        "KACHERY_CHANNEL",
        None,
        _parse_channel,
        "Channel the node fetches missing files from (one of the node's [channels.NAME]).",
    )
    channel_timeout = Setting[float](
        "KACHERY_CHANNEL_TIMEOUT",
        60.0,
        _parse_seconds,
        "Seconds the node waits for another node of the channel to provide a missing file.",
    )
    fsync = Setting[bool](
        "KACHERY_FSYNC",
        False,
        _parse_bool,
        "1: flush every object to disk before it appears (survives power loss; slower).",
    )

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

    @property
    def transport(self) -> Optional[str]:
        """The old name of `backend`, read by callers not yet moved over."""
        return self.backend

    @property
    def auth_token(self) -> Optional[str]:
        """The access token: `auth_token`, else the contents of `auth_token_file`, else None."""
        token = self._auth_token
        path = self.auth_token_file
        if token is not None or path is None:
            return token
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read auth_token_file {path}: {exc.strerror}",
                f"fix the path ({self.source('auth_token_file')}) or set KACHERY_AUTH_TOKEN",
            ) from None
        warn_if_exposed(path, "token file", "the access token")
        try:
            return _parse_token(text)
        except ValueError as exc:
            raise ConfigError(f"auth_token_file {path} does not hold a token", str(exc)) from None

    def plugin_settings(self, name: str) -> Dict[str, Any]:
        """The `[plugins.NAME]` table, merged: system file < user file < the chosen profile.

        Plugins validate their own keys; kachery passes the values as TOML gave them.
        """
        return dict(self._plugins.get(name, {}))

    def get(self, key: str) -> Any:
        """A setting's value by key (an alternate spelling such as `transport` works too)."""
        return self._values[canonical_key(key)].value

    def source(self, key: str) -> str:
        """Where the value came from: "default", "command line", "environment VAR", a file."""
        return self._values[canonical_key(key)].source

    def is_set(self, key: str) -> bool:
        """True when the value was set somewhere, rather than being the built-in default."""
        return self.source(key) != "default"

    def items(self) -> List[Tuple[str, Resolved]]:
        return list(self._values.items())

    def replace(self, **overrides: Any) -> Config:
        """A copy with some values set explicitly (used by backends for derived defaults)."""
        values = dict(self._values)
        for key, value in overrides.items():
            values[canonical_key(key)] = Resolved(value, "derived")
        return Config(
            values, self.config_file, self.system_config_file, self._plugins, self.environ
        )


SETTINGS: Dict[str, Setting[Any]] = {
    s.key: s for s in vars(Config).values() if isinstance(s, Setting)
}
"""Every setting by key, in the order `kachery-client config` shows them."""

_ALT_KEYS: Dict[str, str] = {s.alt_key: s.key for s in SETTINGS.values() if s.alt_key}


def canonical_key(key: str) -> str:
    """The setting's key for a key or its alternate spelling (`transport` -> `backend`)."""
    return _ALT_KEYS.get(key, key)


def default_config_path(env: Mapping[str, str]) -> Path:
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    from kachery_core.settings.paths import user_config_dir

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
        layers = [self.top, *self.profiles.values()]
        if any("auth_token" in layer.values for layer in layers):
            warn_if_exposed(path, "config file", "the auth_token")

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
            name = canonical_key(key)
            if name not in SETTINGS or (name == "profile" and not allow_profile):
                known = [k for k in SETTINGS if allow_profile or k != "profile"]
                raise ConfigError(
                    f"unknown setting {key!r} in {where}",
                    "known settings: " + ", ".join(known + ["[profiles.NAME]", "[plugins.NAME]"]),
                )
            if name in values:
                raise ConfigError(
                    f"both {name!r} and {SETTINGS[name].alt_key!r} are set in {where}",
                    f"they are two spellings of one setting; keep {name!r}",
                )
            try:  # every value is checked, even ones the environment overrides
                SETTINGS[name].parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid value {raw!r} for {key} in {where}", str(exc)) from None
            values[name] = raw
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
    explicit = _explicit_settings(explicit or {})
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
        elif _env_name(setting, env):
            where = _env_name(setting, env)
            raw, source = env[where], f"environment {where}"
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


def _explicit_settings(explicit: Mapping[str, Any]) -> Dict[str, Any]:
    """The explicitly given settings by key (None: not given), alternate spellings merged."""
    settings: Dict[str, Any] = {}
    for key, value in explicit.items():
        name = canonical_key(key)
        if name not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}", "known settings: " + ", ".join(SETTINGS))
        if value is None:
            continue
        if name in settings:
            raise ConfigError(
                f"both {name!r} and {SETTINGS[name].alt_key!r} given",
                "they are two spellings of one setting",
            )
        settings[name] = value
    return settings


def _env_name(setting: Setting[Any], env: Mapping[str, str]) -> str:
    """The environment variable that sets `setting` ("" if none): its own, else the alternate."""
    for name in (setting.env, setting.alt_env):
        if name and env.get(name):
            return name
    return ""


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
    """Set a top-level string setting in a TOML config file, keeping everything else as it is.

    The new text is parsed back and must hold exactly the old settings plus this one,
    so a file this cannot edit cleanly is left alone (with an error) rather than damaged.
    """
    from kachery_core.settings.toml import basic_string, set_top_level_string

    setting = SETTINGS[canonical_key(key)]
    setting.parse(value)
    before = read_config_file(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    spellings = [setting.alt_key] if setting.alt_key else []
    new_text = set_top_level_string(text, setting.key, value, drop=spellings)
    expected = {k: v for k, v in before.items() if k not in spellings}
    expected[setting.key] = value
    path.parent.mkdir(parents=True, exist_ok=True)

    def unchanged_but_for_the_new_value(staging: Path) -> None:
        # never replace a working file with a broken one
        if read_config_file(staging) != expected:
            raise ConfigError(
                f"cannot update {path} without changing other settings",
                f"add this line at its top by hand: {setting.key} = {basic_string(value)}",
            )

    write_atomically(
        path, new_text.encode("utf-8"), mode=None, check=unchanged_but_for_the_new_value
    )
