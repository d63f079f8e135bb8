"""Long-lived, revocable access tokens for clients that cannot read the client-auth file.

The rotating client-auth code only reaches users who can read the node's storage
directory. A laptop across the network gets a token instead: `kachery-daemon token create`
prints it once, and the node keeps only its SHA-256 (in `kachery-tokens.json`, mode 0600),
so a leaked storage directory does not leak working tokens. A label is printable text
(no newline or other control character), so `token list` shows one line per token. Clients send a token in the
same header as the auth code. Each token has a scope (`read`, `write` or `admin`, see
scopes.py); a record written before scopes existed is read as `write`.

The node re-reads the file when it changes, so `token create` and `token revoke` take
effect on the next request, with the node running or not. Both change the file under an
exclusive lock (`kachery-tokens.json.lock` beside it) and replace it whole by a rename, so
two commands at once never lose each other's change, and the node never reads half a file.
A file the node cannot parse makes it refuse every token (the auth code still works)
until its admin fixes it: a token is never accepted on a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from kachery_core.atomic_file import write_atomically
from kachery_core.errors import ConfigError, InvalidInputError

from . import scopes

FILE_NAME = "kachery-tokens.json"
LOCK_SUFFIX = ".lock"
TOKEN_PREFIX = "kt_"


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    """The first 12 hex digits of the token's SHA-256: safe to show, names it for revoke."""
    label: str
    created: float
    sha256: str
    scope: str = scopes.DEFAULT_TOKEN_SCOPE
    """What the token may do: one of `scopes.TOKEN_SCOPES`."""

    @property
    def shown_label(self) -> str:
        """The label for a terminal: a character that is not printable (a newline, from a
        file written before labels were checked) escaped, so one token is one line."""
        return printable(self.label)

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.token_id,
            "label": self.label,
            "created": self.created,
            "sha256": self.sha256,
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, doc: object, where: str) -> TokenRecord:
        """A record of the token file, every field checked; `ConfigError` naming a bad one."""
        if not isinstance(doc, dict):
            raise ConfigError(f"{where} is not an object")
        for key, kind in (("id", str), ("label", str), ("sha256", str)):
            if not isinstance(doc.get(key), kind):
                raise ConfigError(f"{where} has no {key!r} string")
        created = doc.get("created")
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise ConfigError(f"{where} has no 'created' time")
        sha256 = doc["sha256"]
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ConfigError(f"{where} has a 'sha256' that is not 64 hex digits")
        scope = doc.get("scope", scopes.DEFAULT_TOKEN_SCOPE)  # records from before scopes
        if scope not in scopes.TOKEN_SCOPES:
            raise ConfigError(
                f"{where} has scope {str(scope)[:20]!r}, not one of {', '.join(scopes.TOKEN_SCOPES)}"
            )
        return cls(doc["id"], doc["label"], float(created), sha256, scope)


def printable(text: str) -> str:
    """`text` with each character that is not printable written as its escape (`\\n`)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The token file of one storage directory."""

    def __init__(self, storage_dir: Path) -> None:
        self.path = Path(storage_dir) / FILE_NAME
        self.lock_path = self.path.with_name(FILE_NAME + LOCK_SUFFIX)
        self._seen: Optional[Tuple[int, int, int]] = None
        """mtime, inode and size of the file last read: a change to any means read it again."""
        self._scopes: List[Tuple[str, str]] = []
        """(sha256, scope) of each token, as last read."""
        self._unreadable: Optional[str] = None
        """Why the file last read could not be used; every token is refused meanwhile."""
        self.last_used: Dict[str, float] = {}
        """sha256 -> when the node last accepted the token (since it started; memory only)."""

    # -- administration (the `kachery-daemon token` commands) -------------------------

    def records(self) -> List[TokenRecord]:
        """The tokens in the file; `ConfigError` (one line) when it is not a token file."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read token file {self.path}: {exc}") from None
        tokens = doc.get("tokens") if isinstance(doc, dict) else None
        if not isinstance(tokens, list):
            raise ConfigError(f"token file {self.path} has no list of 'tokens'")
        return [
            TokenRecord.from_json(t, f"token {i + 1} in {self.path}") for i, t in enumerate(tokens)
        ]

    def create(
        self, label: str, scope: str = scopes.DEFAULT_TOKEN_SCOPE
    ) -> Tuple[TokenRecord, str]:
        """A new token: its record and the token itself (shown once, never stored)."""
        label = label.strip()
        if not label:
            raise InvalidInputError("a token needs a --label", "say whose or what it is for")
        if not label.isprintable():
            raise InvalidInputError(
                f"token label {label!r} is not printable text (it has a newline, tab or"
                " other control or format character)",
                "give --label letters, digits, spaces and punctuation only",
            )
        if scope not in scopes.TOKEN_SCOPES:
            raise InvalidInputError(
                f"unknown token scope {scope!r}", f"use one of {', '.join(scopes.TOKEN_SCOPES)}"
            )
        with self._locked():
            records = self.records()
            if any(r.label == label for r in records):
                raise InvalidInputError(
                    f"a token labelled {label!r} already exists",
                    "revoke it first or choose another label",
                )
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            digest = _digest(token)
            record = TokenRecord(digest[:12], label, time.time(), digest, scope)
            self._write(records + [record])
        return record, token

    def revoke(self, id_or_label: str) -> TokenRecord:
        with self._locked():
            records = self.records()
            matches = [r for r in records if id_or_label in (r.token_id, r.label)]
            if not matches:
                known = ", ".join(f"{r.token_id} ({r.shown_label})" for r in records)
                known = known or "none"
                raise InvalidInputError(
                    f"no token with id or label {id_or_label!r} in {self.path}",
                    f"tokens: {known}",
                )
            self._write([r for r in records if r not in matches])
        return matches[0]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the token file's lock across a read-modify-write (blocks other commands)."""
        import fcntl

        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, records: List[TokenRecord]) -> None:
        """The one place the token file is written: whole, by rename, mode 0600."""
        doc = {"tokens": [r.to_json() for r in records]}
        write_atomically(self.path, json.dumps(doc, indent=1).encode(), 0o600)

    # -- checking (the node, on every request) ---------------------------------------

    def scope_of(self, presented: str) -> Optional[str]:
        """The scope of a valid token, None for anything else.

        Raises `ConfigError` (the refusal's reason) while the token file cannot be parsed.
        """
        if not presented.startswith(TOKEN_PREFIX):
            return None
        return self.scope_of_digest(_digest(presented))

    def scope_of_digest(self, digest: str) -> Optional[str]:
        """The scope of the token with this SHA-256 (a web session remembers only that),
        None when it is not (or no longer) in the file; the token counts as used now."""
        self._reload_if_changed()
        if self._unreadable is not None:
            raise ConfigError(self._unreadable)
        found = None
        for known, scope in self._scopes:  # all compared: the time says nothing
            if hmac.compare_digest(digest, known):
                found = scope
        if found is not None:
            self.last_used[digest] = time.time()
        return found

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
            seen: Optional[Tuple[int, int, int]] = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            seen = None
        except OSError as exc:  # e.g. permissions changed under the node: refuse, say why
            seen = (-1, -1, exc.errno or 0)
        if seen == self._seen:  # a new file is written by rename: a new inode
            return
        self._seen = seen
        self._scopes, self._unreadable = [], None
        if seen is None:
            return
        try:
            self._scopes = [(r.sha256, r.scope) for r in self.records()]
        except ConfigError as exc:
            self._unreadable = f"the node refuses every access token: {exc}; its admin must fix or remove the token file"
            print(f"kachery-daemon: {self._unreadable}", file=sys.stderr, flush=True)
