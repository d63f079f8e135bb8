"""Which settings exist: `Setting` declares one, `Config` holds them resolved, typed.

Resolution (defaults, files, profiles, environment) is in `kachery_core.settings.config`;
this module only says what each setting is called, where the environment sets it, its
default and how it is parsed, so mypy checks every reader of `config.<name>`.
"""

from __future__ import annotations

import os
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

from kachery_core.errors import ConfigError
from kachery_core.records import dataclass
from kachery_core.secret_files import warn_if_exposed
from kachery_core.settings.parsers import (
    parse_bool,
    parse_channel,
    parse_grace_seconds,
    parse_host,
    parse_name,
    parse_node_id,
    parse_path,
    parse_port,
    parse_profile,
    parse_seconds,
    parse_size,
    parse_token,
)

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
        parse_profile,
        "Named profile ([profiles.NAME] in a config file) whose settings apply.",
    )
    backend = Setting[Optional[str]](
        "KACHERY_BACKEND",
        None,
        parse_name,
        "Backend to use (see `kachery-client backends`); unset: chosen automatically.",
        alt_key="transport",
        alt_env="KACHERY_TRANSPORT",
    )
    storage_dir = Setting[Path](
        "KACHERY_STORAGE_DIR",
        "~/kachery-storage",
        parse_path,
        "Storage directory: the embedded backend's store, or where a node's is mounted.",
    )
    daemon_host = Setting[str](
        "KACHERY_DAEMON_HOST",
        "localhost",
        parse_host,
        "Host of the node. A host other than this machine selects the remote backend.",
    )
    daemon_port = Setting[int](
        "KACHERY_DAEMON_PORT",
        20431,
        parse_port,
        "HTTP port of the node.",
    )
    temp_dir = Setting[Optional[Path]](
        "KACHERY_TEMP_DIR",
        None,
        parse_path,
        "Staging directory for files being written; unset: <storage_dir>/tmp.",
    )
    keep_temp_files = Setting[bool](
        "KACHERY_KEEP_TEMP_FILES",
        False,
        parse_bool,
        "1: keep staging files of failed or interrupted operations, for debugging.",
    )
    offline_storage_dir = Setting[Optional[Path]](
        "KACHERY_OFFLINE_STORAGE_DIR",
        None,
        parse_path,
        "Set: offline mode, files are only read from this directory.",
    )
    expected_node_id = Setting[Optional[str]](
        "KACHERY_EXPECTED_NODE_ID",
        None,
        parse_node_id,
        "Node ID the client insists on (set by generate-node-id).",
    )
    daemon_tls = Setting[bool](
        "KACHERY_DAEMON_TLS",
        False,
        parse_bool,
        "1: talk to the node over HTTPS (a node started with --tls-cert, or behind a TLS proxy).",
    )
    tls_ca_file = Setting[Optional[Path]](
        "KACHERY_TLS_CA_FILE",
        None,
        parse_path,
        "CA certificate(s) to trust for the node's HTTPS; unset: the system's CAs.",
    )
    grpc_port = Setting[int](
        "KACHERY_GRPC_PORT",
        20432,
        parse_port,
        "gRPC port of the node (the grpc backend).",
    )
    _auth_token = Setting[Optional[str]](
        "KACHERY_AUTH_TOKEN",
        None,
        parse_token,
        "Access token from `kachery-daemon token create`, for a node whose client-auth file you cannot read.",
        secret=True,
        key="auth_token",
    )
    """The `auth_token` setting itself; read `auth_token`, which falls back to the file."""
    auth_token_file = Setting[Optional[Path]](
        "KACHERY_AUTH_TOKEN_FILE",
        None,
        parse_path,
        "File holding the access token (used when auth_token is unset).",
    )
    auth_code_file = Setting[Optional[Path]](
        "KACHERY_AUTH_CODE_FILE",
        None,
        parse_path,
        "The node's rotating client-auth file; unset: <storage_dir>/client-auth.",
    )
    connect_timeout = Setting[float](
        "KACHERY_CONNECT_TIMEOUT",
        5.0,
        parse_seconds,
        "Seconds to wait for a connection to the node.",
    )
    read_timeout = Setting[float](
        "KACHERY_READ_TIMEOUT",
        300.0,
        parse_seconds,
        "Seconds to wait for the node's next bytes before giving up on it.",
    )
    channel = Setting[Optional[str]](
        "KACHERY_CHANNEL",
        None,
        parse_channel,
        "Channel the node fetches missing files from (one of the node's [channels.NAME]).",
    )
    channel_timeout = Setting[float](
        "KACHERY_CHANNEL_TIMEOUT",
        60.0,
        parse_seconds,
        "Seconds the node waits for another node of the channel to provide a missing file.",
    )
    fsync = Setting[bool](
        "KACHERY_FSYNC",
        False,
        parse_bool,
        "1: flush every object to disk before it appears (survives power loss; slower).",
    )
    max_cache_size = Setting[Optional[int]](
        "KACHERY_MAX_CACHE_SIZE",
        None,
        parse_size,
        "Bytes the store's objects may take (50GiB, 500MB...): past it, least recently used "
        "cached objects are evicted on write; unset: no limit.",
    )
    gc_grace_seconds = Setting[float](
        "KACHERY_GC_GRACE_SECONDS",
        600.0,
        parse_grace_seconds,
        "Seconds after its last use during which gc never evicts an object.",
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
            return parse_token(text)
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
