"""The probe: `GET /probe` on a node, answering who it is and where its storage lives.

`storage_reach` then says whether this user can read that storage directory in place,
and if not, why: not readable by them (a lab member beside a node they do not own, who
is then served over the connection), no node's directory, or another node's.

Backend selection probes the configured local node to decide whether to use it, and
the node-backed backends probe before their first request. This uses only the standard
library so that it stays cheap on every command. Answers are cached for the process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from kachery_core.records import dataclass

PROBE_TIMEOUT = 2.0
NODE_ID_FILE = "kachery-node-id"


@dataclass(frozen=True)
class ProbeAnswer:
    node_id: str
    daemon_version: str
    storage_dir: str
    raw: Dict[str, object]


@dataclass(frozen=True)
class ProbeResult:
    """A probe's answer, or why there was none.

    `tls_error` says why the HTTPS handshake failed (an untrusted certificate, or a
    node that speaks plain HTTP): unlike "nothing listens", that is worth telling a user
    who asked for TLS, instead of quietly using the embedded storage.
    """

    answer: Optional[ProbeAnswer]
    listening: bool = False
    tls_error: Optional[str] = None


_cache: Dict[Tuple[str, int, bool], ProbeResult] = {}


@dataclass(frozen=True)
class Tls:
    """Probe over HTTPS, trusting `ca_file` (None: the system's CAs).

    `verify=False` only asks "is a node listening there?" (`kachery-daemon info` on the
    node's own machine); clients always verify.
    """

    ca_file: Optional[str] = None
    verify: bool = True

    @classmethod
    def from_settings(
        cls, daemon_tls: bool, tls_ca_file: Optional[os.PathLike[str]]
    ) -> Optional[Tls]:
        """What a client uses for the `daemon_tls` and `tls_ca_file` settings: None for
        plain HTTP. Backend selection and the http backend probe alike through this."""
        if not daemon_tls:
            return None
        return cls(None if tls_ca_file is None else os.fspath(tls_ca_file))


def probe_node(
    host: str,
    port: int,
    timeout: float = PROBE_TIMEOUT,
    fresh: bool = False,
    tls: Optional[Tls] = None,
) -> Optional[ProbeAnswer]:
    """Probe `host:port`; None if nothing there answers like a kachery node."""
    return probe(host, port, timeout, fresh, tls).answer


def probe(
    host: str,
    port: int,
    timeout: float = PROBE_TIMEOUT,
    fresh: bool = False,
    tls: Optional[Tls] = None,
) -> ProbeResult:
    """Probe `host:port`, telling "nothing listens" from "the TLS handshake failed"."""
    key = (host, port, tls is not None)
    if not fresh and key in _cache:
        return _cache[key]
    result = _probe_once(host, port, timeout, tls)
    _cache[key] = result
    return result


def forget_probe(host: str, port: int) -> None:
    for tls in (False, True):
        _cache.pop((host, port, tls), None)


def _connect(host: str, port: int, timeout: float) -> Optional[int]:
    """A connected TCP socket's descriptor, or None when nothing accepts at `host:port`.

    What `socket.create_connection` does, through the `_socket` extension itself: most
    commands probe where nothing listens, and `socket` (with `selectors`, its enums and the
    `idna` codec a str host is encoded with) would cost them more than the attempt.
    """
    import _socket

    name = host.encode("ascii") if host.isascii() else host.encode("idna")
    try:
        addresses = _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM)
    except OSError:
        return None
    for family, kind, proto, _canonical, address in addresses:
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError:
            sock.close()
            continue
        sock.settimeout(None)
        return int(sock.detach())
    return None


def _probe_once(host: str, port: int, timeout: float, tls: Optional[Tls]) -> ProbeResult:
    # Connect first with a bare socket: when nothing listens (the usual case without a
    # node) the answer comes without importing the HTTP machinery at all.
    fd = _connect(host, port, timeout)
    if fd is None:
        return ProbeResult(None)
    import http.client
    import json
    import socket

    sock = socket.socket(fileno=fd)
    sock.settimeout(timeout)  # as create_connection leaves it, for the request below
    if tls is not None:
        import ssl

        context = ssl.create_default_context(cafile=tls.ca_file)
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            sock = context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            return ProbeResult(None, True, _tls_failure(exc))
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", "/probe")
        response = conn.getresponse()
        if response.status != 200:
            return ProbeResult(None, True)
        doc = json.loads(response.read(1 << 20))
    except (OSError, socket.timeout, http.client.HTTPException, ValueError):
        return ProbeResult(None, True)
    finally:
        conn.close()
    if not isinstance(doc, dict) or doc.get("success") is not True:
        return ProbeResult(None, True)
    answer = ProbeAnswer(
        str(doc.get("nodeId", "")),
        str(doc.get("daemonVersion", "")),
        str(doc.get("kacheryStorageDir", "")),
        doc,
    )
    return ProbeResult(answer, True)


def _tls_failure(exc: BaseException) -> str:
    """One line on why a handshake failed (the certificate's problem when it is one)."""
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    if reason:
        text = str(reason).replace("_", " ").lower()
        if getattr(exc, "verify_message", None):
            return f"its certificate was not accepted ({text})"
        if "wrong version" in text or "record layer" in text or "http request" in text:
            return f"it does not speak TLS ({text}); a node serving plain HTTP?"
        return f"the TLS handshake failed ({text})"
    return f"the TLS handshake failed ({exc})"


UNREADABLE = "unreadable"
NOT_STORAGE = "not storage"
OTHER_NODE = "other node"


@dataclass(frozen=True)
class StorageReach:
    """Whether this user may read node `node_id`'s objects in `root`, and if not, why.

    `problem` is None (they may), `UNREADABLE` (the permissions keep this user out),
    `NOT_STORAGE` (no `kachery-node-id` there: no node's directory, or none at all) or
    `OTHER_NODE` (`owner` is another node). `describe()` says it in words for errors.
    """

    root: Path
    node_id: str
    problem: Optional[str]
    owner: Optional[str] = None
    detail: str = ""

    def describe(self) -> str:
        """The end of a sentence starting with the directory's name."""
        if self.problem == UNREADABLE:
            return f"is not readable by user {current_user()} ({self.detail})"
        if self.problem == OTHER_NODE:
            return f"is the storage directory of another node ({self.owner})"
        if self.problem == NOT_STORAGE:
            return f"is no node's storage directory ({self.detail})"
        return f"is the storage directory of node {self.node_id}"


def storage_reach(root: Path, node_id: str) -> StorageReach:
    """Read `root`'s node-ID file as this user, and say what it means for node `node_id`."""
    path = Path(root) / NODE_ID_FILE
    try:
        owner = path.read_text().strip()
    except PermissionError as exc:
        blocked = _first_blocked(Path(root))
        where = f"{blocked} is mode {_mode(blocked)}" if blocked else f"{path}: {exc.strerror}"
        return StorageReach(Path(root), node_id, UNREADABLE, detail=where)
    except FileNotFoundError:
        detail = f"it has no {NODE_ID_FILE} file" if Path(root).is_dir() else "it does not exist"
        return StorageReach(Path(root), node_id, NOT_STORAGE, detail=detail)
    except OSError as exc:
        return StorageReach(Path(root), node_id, UNREADABLE, detail=f"{path}: {exc.strerror}")
    if owner != node_id:
        return StorageReach(Path(root), node_id, OTHER_NODE, owner or "an empty ID")
    return StorageReach(Path(root), node_id, None, owner)


def current_user() -> str:
    """This process's user name (its uid when it has none)."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _first_blocked(root: Path) -> Optional[Path]:
    """The outermost directory on the way to `root` this user may not enter."""
    for directory in [*reversed(root.absolute().parents), root.absolute()]:
        if directory.is_dir() and not os.access(directory, os.X_OK):
            return directory
    return None


def _mode(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "unknown"
    owner = str(st.st_uid)
    try:
        import grp
        import pwd

        owner = f"{pwd.getpwuid(st.st_uid).pw_name}:{grp.getgrgid(st.st_gid).gr_name}"
    except (ImportError, KeyError):
        pass
    return f"{st.st_mode & 0o777:04o}, owned by {owner}"
