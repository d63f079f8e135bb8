"""Web sessions: a login with a token or the client-auth code becomes a random session ID
in an `HttpOnly`, `SameSite=Strict` cookie that expires.

The node keeps sessions in memory (a restart logs everyone out) and never the secret that
opened one: a token session remembers the token's SHA-256 and is checked against the
token file on every request, so revoking the token ends its sessions at once. Each
session has its own CSRF token, which every form that changes something must send back.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

COOKIE = "kachery_ui_session"
SESSION_SECONDS = 8 * 3600.0
MAX_SESSIONS = 1000
"""The oldest session goes when more are opened: a login flood cannot fill memory."""


@dataclass
class Session:
    scope: str
    """What it may do: the scope of the credential that opened it (scopes.py)."""
    token_sha256: Optional[str]
    """The token's hash, None for a session opened with the client-auth code."""
    label: str
    """Whose it is: the token's label, or "local user"."""
    expires: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def csrf_matches(self, sent: Optional[str]) -> bool:
        return bool(sent) and hmac.compare_digest(str(sent).encode(), self.csrf.encode())


class Sessions:
    def __init__(self, seconds: float = SESSION_SECONDS, limit: int = MAX_SESSIONS) -> None:
        self.seconds = seconds
        self.limit = limit
        self._open: OrderedDict[str, Session] = OrderedDict()

    def open(self, scope: str, token_sha256: Optional[str], label: str) -> str:
        """A new session; its ID (the cookie's value)."""
        session_id = secrets.token_urlsafe(32)
        self._open[session_id] = Session(scope, token_sha256, label, time.time() + self.seconds)
        while len(self._open) > self.limit:
            self._open.popitem(last=False)
        return session_id

    def get(self, session_id: Optional[str]) -> Optional[Session]:
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        if session.expires <= time.time():
            del self._open[session_id]
            return None
        return session

    def close(self, session_id: Optional[str]) -> None:
        if session_id:
            self._open.pop(session_id, None)
