"""Long-lived, revocable access tokens for clients that cannot read the client-auth file.

The rotating client-auth code only reaches users who can read the node's storage
directory. A laptop across the network gets a token instead: `kachery-daemon token create`
prints it once, and the node keeps only its SHA-256 (in `kachery-tokens.json`, mode 0600),
so a leaked storage directory does not leak working tokens. Clients send a token in the
same header as the auth code.

The node re-reads the file when it changes, so `token create` and `token revoke` take
effect on the next request, with the node running or not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from kachery_core.atomic_file import write_atomically
from kachery_core.errors import ConfigError, InvalidInputError

FILE_NAME = "kachery-tokens.json"
TOKEN_PREFIX = "kt_"


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    """The first 12 hex digits of the token's SHA-256: safe to show, names it for revoke."""
    label: str
    created: float
    sha256: str

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.token_id,
            "label": self.label,
            "created": self.created,
            "sha256": self.sha256,
        }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The token file of one storage directory."""

    def __init__(self, storage_dir: Path) -> None:
        self.path = Path(storage_dir) / FILE_NAME
        self._seen: Optional[Tuple[int, int]] = None
        self._hashes: List[str] = []

    # -- administration (the `kachery-daemon token` commands) -------------------------

    def records(self) -> List[TokenRecord]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read token file {self.path}: {exc}") from None
        return [
            TokenRecord(str(t["id"]), str(t["label"]), float(t["created"]), str(t["sha256"]))
            for t in doc.get("tokens", [])
        ]

    def create(self, label: str) -> Tuple[TokenRecord, str]:
        """A new token: its record and the token itself (shown once, never stored)."""
        label = label.strip()
        if not label:
            raise InvalidInputError("a token needs a --label", "say whose or what it is for")
        records = self.records()
        if any(r.label == label for r in records):
            raise InvalidInputError(
                f"a token labelled {label!r} already exists",
                "revoke it first or choose another label",
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(token)
        record = TokenRecord(digest[:12], label, time.time(), digest)
        self._write(records + [record])
        return record, token

    def revoke(self, id_or_label: str) -> TokenRecord:
        records = self.records()
        matches = [r for r in records if id_or_label in (r.token_id, r.label)]
        if not matches:
            known = ", ".join(f"{r.token_id} ({r.label})" for r in records) or "none"
            raise InvalidInputError(
                f"no token with id or label {id_or_label!r} in {self.path}", f"tokens: {known}"
            )
        self._write([r for r in records if r not in matches])
        return matches[0]

    def _write(self, records: List[TokenRecord]) -> None:
        doc = {"tokens": [r.to_json() for r in records]}
        write_atomically(self.path, json.dumps(doc, indent=1).encode(), 0o600)

    # -- checking (the node, on every request) ---------------------------------------

    def accepts(self, presented: str) -> bool:
        if not presented.startswith(TOKEN_PREFIX):
            return False
        self._reload_if_changed()
        digest = _digest(presented)
        return any(hmac.compare_digest(digest, known) for known in self._hashes)

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
            seen: Optional[Tuple[int, int]] = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:  # a new file (written by rename) or a removed one
            self._hashes = [r.sha256 for r in self.records()] if seen else []
            self._seen = seen
