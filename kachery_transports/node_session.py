"""What every network backend does the same way, whatever carries its requests.

A client session with one node: which credential goes with each request (and where it
came from, for the error that names it), when a refused request is sent once more, how the
node proves it is the expected one, and which `KacheryError` a failure the node reports
becomes. The `http`, `remote` and `grpc` backends each hold one `NodeSession` and leave
these rules to it; only the carrying of requests differs between them.

    >>> session = NodeSession(resolve_config(), "http://127.0.0.1:14507",          # doctest: +SKIP
    ...                       auth_file=lambda: Path("/srv/kachery/client-auth"))
    >>> session.with_credential(lambda code: post("/mutable/get", code))          # doctest: +SKIP

Only the standard library is imported here (the signature check loads `cryptography`
only when a node must prove its ID).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

from kachery_core.errors import (
    KacheryError,
    NodeIdMismatchError,
    NotFoundError,
    TransportError,
    UnsupportedOperation,
)
from kachery_core.protocol.node_key import check_node_id
from kachery_core.protocol.wire import (
    ERROR_TYPES,
    error_from_type,
    new_probe_nonce,
    probe_signature_ok,
)
from kachery_core.settings.config import Config

T = TypeVar("T")

NODE_ID_FILE = "kachery-node-id"


class AccessRefused(TransportError):
    """The node refused the credential sent (a wrong, revoked or just-rotated one)."""


@dataclass(frozen=True)
class Credential:
    """What goes with a request to prove the client may use the node."""

    value: str
    source: str
    """Where it came from, named when the node refuses it."""
    rotates: bool
    """True for the client-auth code, which the node replaces every few minutes."""


class NodeSession:
    """The rules a client follows with one node, shared by every network backend.

    `auth_file()` is where the node's client-auth code is read when no access token is set
    (`auth_code_file`, else a file in the backend's storage directory); it may raise to say
    that no code can be reached from here. `missing_auth_file_hint` says what to do when
    that file does not exist.
    """

    def __init__(
        self,
        config: Config,
        url: str,
        auth_file: Callable[[], Path],
        missing_auth_file_hint: str = "is the node running on that storage directory?",
    ) -> None:
        self.url = url
        self.where = f"the node at {url}"
        self._token = config.auth_token
        self._token_source = config.source("auth_token")
        self._auth_file = auth_file
        self._missing_hint = missing_auth_file_hint
        self.expected_node_id = config.expected_node_id
        self._expected_source = config.source("expected_node_id")

    # -- credentials -------------------------------------------------------------------

    def credential(self) -> Credential:
        """The access token if one is set, else the client-auth code read fresh from its file.

        Read for every request: the code rotates, and the one read just now stays valid for
        at least one rotation.
        """
        if self._token:
            return Credential(self._token, f"the access token ({self._token_source})", False)
        path = self._auth_file()
        try:
            code = path.read_text().strip()
        except FileNotFoundError:
            raise TransportError(f"no client-auth file at {path}", self._missing_hint) from None
        except OSError as exc:
            denied = isinstance(exc, (PermissionError, IsADirectoryError))
            raise TransportError(
                f"cannot read {path}: {'permission denied' if denied else exc.strerror}",
                f"ask to be added to group {_group_name(path)!r}, which may read it, "
                "or use an access token (KACHERY_AUTH_TOKEN)",
            ) from None
        if not code:
            raise TransportError(f"the client-auth file {path} is empty", "is the node running?")
        return Credential(code, f"the code in {path}", True)

    @property
    def may_send_paths(self) -> bool:
        """True when the node may be asked to read a path of this machine for us: only with
        the client-auth code, never with an access token (see SECURITY.md)."""
        return not self._token

    def check_may_link(self, backend: str) -> None:
        """A link hands the node a path: refused up front when a token is the credential."""
        if not self.may_send_paths:
            raise UnsupportedOperation(
                backend,
                "linking files with an access token",
                "only local users with the node's client-auth code may link; use store-file",
            )

    def with_credential(self, request: Callable[[str], T], replayable: bool = True) -> T:
        """`request(credential)`, sent once more with a freshly read code if it is refused.

        A refusal of a code read just now means it rotated on the way; a token does not
        rotate, so its refusal is final, and a request whose body was a stream that cannot
        be read again (`replayable=False`) is not repeated. `request` raises
        `AccessRefused` (from `refused`) when the node refuses it.
        """
        credential = self.credential()
        try:
            return request(credential.value)
        except AccessRefused:
            if not (credential.rotates and replayable):
                raise
        return request(self.credential().value)

    # -- identity ------------------------------------------------------------------------

    def check_identity(self, node_id: str, signature_for: Callable[[str], object]) -> None:
        """Refuse a node that is not the expected one (`expected_node_id`, when set).

        The ID it reports must match, and it must prove it: `signature_for(nonce)` asks the
        node to sign a fresh nonce (a signed probe), which must verify with that ID's key.
        """
        check_node_id(self.expected_node_id, node_id, self.where, self._expected_source)
        if not self.expected_node_id:
            return
        nonce = new_probe_nonce()
        if not probe_signature_ok(self.expected_node_id, nonce, signature_for(nonce)):
            raise NodeIdMismatchError(
                f"{self.where} could not prove it is {self.expected_node_id} "
                f"({self._expected_source})",
                "its probe signature does not verify: connect to the right node",
            )

    # -- errors --------------------------------------------------------------------------

    def refused(self, details: str) -> AccessRefused:
        """The error for a refused credential, naming where the credential came from."""
        try:
            source = self.credential().source
        except KacheryError:
            source = "the credential sent"
        return AccessRefused(f"{self.where} refused access: {details}", f"sent {source}")

    def node_error(
        self,
        kind: Optional[str],
        details: str,
        fallback: Callable[[], KacheryError],
        subject: str = "",
    ) -> KacheryError:
        """The error for a failure the node reported with error type `kind`.

        The type decides the class, so every backend raises what the `local` backend raises
        for the same failure. Without one (an older node), or with the generic "error",
        `fallback()` maps what the protocol said instead (an HTTP status, a gRPC code).
        `subject` (a URI) makes a not-found message name what was not found where.
        """
        if kind == "refused":
            return self.refused(details)
        if not kind or kind == "error" or kind not in ERROR_TYPES:
            return fallback()
        if subject and issubclass(ERROR_TYPES[kind], NotFoundError):
            return ERROR_TYPES[kind](f"{subject} not found by {self.where}: {details}")
        return error_from_type(kind, details)


def storage_owner(root: Path) -> Optional[str]:
    """The ID of the node whose storage directory `root` is (None: none, or unreadable)."""
    try:
        return (root / NODE_ID_FILE).read_text().strip()
    except OSError:
        return None


def _group_name(path: Path) -> str:
    try:
        import grp

        return grp.getgrgid(os.stat(path).st_gid).gr_name
    except (KeyError, OSError, ImportError):
        return "the node's group"
