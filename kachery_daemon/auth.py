"""Who may use the node: the rotating client auth code.

The node writes a random code to `<storage>/client-auth` (mode 0640, optionally owned by
`--auth-group`) and rewrites it every `rotate_seconds`; the previous code stays valid for
one more rotation, so a client that read the file just before a rotation is not refused.
Being able to read that file is what grants a local user access to the node; the node
cannot tell those users apart, so a path request is read only as for every one of them
(`path_policy.path_identity`: the file's group decides who they are). Clients send
the code in the `KACHERY-CLIENT-AUTH-CODE` header (`wire.AUTH_HEADER`; gRPC metadata
`wire.AUTH_METADATA`).

`Authorizer` takes a list of credential checks, each giving the scope of a credential it
knows (scopes.py): the code is a local user's and may do everything (`scopes.LOCAL`); the
long-lived access tokens of clients on other machines (tokens.py) come through the same
header and may do what their scope allows.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import Callable, List, Optional

from kachery_core.errors import KacheryError
from kachery_core.protocol.wire import AUTH_HEADER, one_line
from kachery_core.store.layout import StorageLayout

from . import scopes
from .node_files import write_atomically

DEFAULT_ROTATE_SECONDS = 300.0

CredentialCheck = Callable[[str], Optional[str]]
"""The scope of a credential, None when the check does not know it. It may raise a
`KacheryError` whose message is the reason to refuse (a token file the node cannot read)."""


class RotatingAuthCode:
    """The current and previous client auth codes, and the file clients read them from."""

    def __init__(
        self,
        storage_dir: Path,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        group: Optional[int] = None,
    ) -> None:
        self.path = StorageLayout(storage_dir).client_auth_path
        self.rotate_seconds = rotate_seconds
        self.group = group
        self.current = ""
        self.previous: Optional[str] = None
        self.rotated_at = 0.0
        self.rotate()

    def rotate(self) -> None:
        self.previous, self.current = self.current or None, secrets.token_hex(16)
        write_atomically(self.path, self.current.encode(), 0o640, self.group)
        self.rotated_at = time.monotonic()

    def rotate_if_due(self) -> None:
        if time.monotonic() - self.rotated_at >= self.rotate_seconds:
            self.rotate()

    def accepts(self, code: str) -> bool:
        valid = [c for c in (self.current, self.previous) if c]
        return any(hmac.compare_digest(code.encode(), c.encode()) for c in valid)

    def scope_of(self, code: str) -> Optional[str]:
        """A valid code is a local user's: everything is open to it."""
        return scopes.LOCAL if self.accepts(code) else None


class Authorizer:
    """Allows an operation when a credential check knows the header value and its scope
    reaches the operation's (`scopes.OPERATIONS`)."""

    def __init__(self, checks: List[CredentialCheck]) -> None:
        self.checks = checks

    def reason_to_refuse(
        self, header_value: Optional[str], operation: Optional[str]
    ) -> Optional[str]:
        """None when authorized, else the one-line reason for the 403.

        `operation` is a key of `scopes.OPERATIONS`, or None for a request that matches no
        route (any valid credential may then hear that it does not exist).
        """
        if scopes.needed(operation).scope == scopes.PUBLIC:
            return None
        if not header_value:
            return (
                f"missing {AUTH_HEADER} header: send the code from the node's client-auth file "
                "or an access token"
            )
        scope = None
        for check in self.checks:
            try:
                scope = check(header_value)
            except KacheryError as exc:
                return one_line(str(exc))
            if scope is not None:
                break
        if scope is None:
            if header_value.startswith("kt_"):
                return "unknown or revoked access token: ask the node's admin for a new one"
            return f"invalid {AUTH_HEADER}: the code may have rotated; read client-auth again"
        if scopes.allows(scope, operation):
            return None
        return scopes.refusal(scope, operation)
