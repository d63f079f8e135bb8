"""Feeds: append-only, signed message logs kept by the node, in SQLite.

A feed is an Ed25519 key pair; its ID is the hex public key, and the node keeps the private
key of every feed it creates (those feeds are writeable here). A feed holds subfeeds, each
named by its `subfeed_hash` (see `subfeed_hash`). Every appended message is signed at
append time. The signed envelope, returned when a watch asks for `"signed": true`, is

    {"body": {"message": <json>, "messageNumber": <int>, "previousSignature": <hex or null>,
              "timestamp": <int milliseconds since the epoch>},
     "signature": <hex Ed25519 signature of the body's compact, key-sorted JSON>}

so that a reader holding the feed ID can check each message and the chain of them. The
timestamp is in milliseconds, as the original kachery daemon wrote it (`Date.now()`), so
readers written for it get the same unit. Messages appended by earlier versions of this
node carry float seconds; they are returned exactly as stored (the signature covers the
stored text), so a reader that must tell the two apart can: a value below 1e11 is seconds
(`timestamp_seconds`). The
file is `kachery-feeds.db` in the storage directory and survives restarts.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, List, Optional

from kachery_core.errors import InvalidInputError, NotFoundError

from .mutables import canonical_json
from .sqlite_db import SqliteDb

FILE_NAME = "kachery-feeds.db"
MAX_MESSAGE_CHARS = 4 << 20
"""The largest message appended (its compact JSON): one answer of a watch, which carries at
least one message, then always fits a gRPC message (8 MiB) and stays small."""
MILLISECONDS_FROM = 1e11
"""A timestamp at least this is in milliseconds (1e11 s is the year 5138; 1e11 ms is 1973)."""
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS feeds"
    " (feed_id TEXT PRIMARY KEY, name TEXT UNIQUE, private_key BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS messages (feed_id TEXT NOT NULL, subfeed TEXT NOT NULL,"
    " number INTEGER NOT NULL, body TEXT NOT NULL, signature TEXT NOT NULL,"
    " PRIMARY KEY (feed_id, subfeed, number))",
]


def subfeed_hash(name: Any) -> str:
    """SHA-1 of a string name's UTF-8, or of a non-string name's compact key-sorted JSON;
    a name starting with `~` is already a hash."""
    if isinstance(name, str):
        if name.startswith("~"):
            return name[1:]
        return hashlib.sha1(name.encode("utf-8")).hexdigest()
    return hashlib.sha1(canonical_json(name).encode("utf-8")).hexdigest()


def now_timestamp() -> int:
    """A signed message's timestamp: milliseconds since the epoch, as the original wrote."""
    return int(time.time() * 1000)


def timestamp_seconds(timestamp: float) -> float:
    """Seconds since the epoch of a signed message's timestamp, in milliseconds (now) or in
    seconds (messages appended by earlier versions of this node)."""
    return timestamp / 1000.0 if timestamp >= MILLISECONDS_FROM else float(timestamp)


BODY_START = '{"message":'
TAIL_START = ',"messageNumber":'
TAIL_KEYS = ["messageNumber", "previousSignature", "timestamp"]


def message_text(body: str) -> str:
    """The JSON text of the message inside a stored body, cut out of it, not re-encoded.

    A body is canonical JSON (keys sorted), so it is `{"message":` + the message + `,
    "messageNumber":`... The last `,"messageNumber":` starts the tail, whose keys are
    checked; anything else (never written by this node) is parsed and encoded again.
    """
    cut = body.rfind(TAIL_START)
    if body.startswith(BODY_START) and cut > 0:
        try:
            tail = json.loads("{" + body[cut + 1 :])
        except ValueError:
            tail = None
        if isinstance(tail, dict) and sorted(tail) == TAIL_KEYS:
            return body[len(BODY_START) : cut]
    return canonical_json(json.loads(body)["message"])


def check_feed_id(feed_id: Any) -> str:
    text = str(feed_id)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidInputError(
            f"invalid feed ID {feed_id!r}", "a feed ID is 64 lowercase hex digits"
        )
    return text


def check_subfeed_hash(value: str) -> str:
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInputError(f"subfeedHash must be 40 lowercase hex digits, not {value[:60]!r}")
    return value


class FeedStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, SCHEMA)

    def create_feed(self, name: Optional[str] = None) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        feed_id = (
            key.public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            .hex()
        )
        with self._db.transaction() as db:
            if name is not None:
                db.execute("UPDATE feeds SET name = NULL WHERE name = ?", (name,))
            db.execute(
                "INSERT INTO feeds (feed_id, name, private_key) VALUES (?, ?, ?)",
                (feed_id, name, raw),
            )
        return feed_id

    def get_feed_id(self, name: str) -> Optional[str]:
        with self._db.locked() as db:
            row = db.execute("SELECT feed_id FROM feeds WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def delete_feed(self, feed_id: str) -> None:
        check_feed_id(feed_id)
        with self._db.transaction() as db:
            db.execute("DELETE FROM messages WHERE feed_id = ?", (feed_id,))
            db.execute("DELETE FROM feeds WHERE feed_id = ?", (feed_id,))

    def is_writeable(self, feed_id: str) -> bool:
        check_feed_id(feed_id)
        with self._db.locked() as db:
            return (
                db.execute("SELECT 1 FROM feeds WHERE feed_id = ?", (feed_id,)).fetchone()
                is not None
            )

    def append_messages(self, feed_id: str, subfeed: str, messages: List[Any]) -> int:
        """Sign and append; return the new number of messages in the subfeed."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        check_feed_id(feed_id)
        for i, message in enumerate(messages):
            size = len(canonical_json(message))
            if size > MAX_MESSAGE_CHARS:
                raise InvalidInputError(
                    f"feed message {i} is {size} characters of JSON, more than the node's"
                    f" limit of {MAX_MESSAGE_CHARS} (4 MiB); nothing was appended",
                    "store the data as a file and append its URI",
                )
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT private_key FROM feeds WHERE feed_id = ?", (feed_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"feed {feed_id} is not writeable on this node",
                    "append to a feed this node created",
                )
            key = Ed25519PrivateKey.from_private_bytes(bytes(row[0]))
            last = db.execute(
                "SELECT number, signature FROM messages WHERE feed_id = ? AND subfeed = ?"
                " ORDER BY number DESC LIMIT 1",
                (feed_id, subfeed),
            ).fetchone()
            number, previous = (0, None) if last is None else (last[0] + 1, last[1])
            for message in messages:
                body = {
                    "message": message,
                    "messageNumber": number,
                    "previousSignature": previous,
                    "timestamp": now_timestamp(),
                }
                text = canonical_json(body)
                signature = key.sign(text.encode()).hex()
                db.execute(
                    "INSERT INTO messages (feed_id, subfeed, number, body, signature)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (feed_id, subfeed, number, text, signature),
                )
                number, previous = number + 1, signature
        return number

    def num_messages(self, feed_id: str, subfeed: str) -> int:
        check_feed_id(feed_id)
        with self._db.locked() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM messages WHERE feed_id = ? AND subfeed = ?",
                (feed_id, subfeed),
            ).fetchone()
        return int(row[0])

    def has_message(self, feed_id: str, subfeed: str, position: int) -> bool:
        """Whether the subfeed has a message numbered `position` or more."""
        with self._db.locked() as db:
            return (
                db.execute(
                    "SELECT 1 FROM messages WHERE feed_id = ? AND subfeed = ? AND number >= ?"
                    " LIMIT 1",
                    (feed_id, subfeed, position),
                ).fetchone()
                is not None
            )

    def message_texts(
        self,
        feed_id: str,
        subfeed: str,
        position: int,
        limit: int,
        max_chars: int,
        signed: bool = False,
        first_whatever_size: bool = True,
    ) -> List[str]:
        """The JSON texts of messages from `position` on (envelopes if `signed`): at most
        `limit` of them, and no more than `max_chars` of text, except that the first one is
        returned whatever its size (unless `first_whatever_size` is False), so that a reader
        paging through always moves on.

        Sizes are read first (`length`: stored text is ASCII JSON) and only the rows that
        fit are fetched, so a long subfeed costs the memory of one answer, not its length.
        """
        check_feed_id(feed_id)
        if limit <= 0:
            return []
        with self._db.locked() as db:
            sizes = db.execute(
                "SELECT length(body) + length(signature) FROM messages"
                " WHERE feed_id = ? AND subfeed = ? AND number >= ? ORDER BY number LIMIT ?",
                (feed_id, subfeed, position, limit),
            )
            count, used = 0, 0
            for (size,) in sizes:
                if (count or not first_whatever_size) and used + size > max_chars:
                    break
                count, used = count + 1, used + size
            if not count:
                return []
            rows = db.execute(
                "SELECT body, signature FROM messages"
                " WHERE feed_id = ? AND subfeed = ? AND number >= ? ORDER BY number LIMIT ?",
                (feed_id, subfeed, position, count),
            )
            if signed:
                return [f'{{"body":{body},"signature":{json.dumps(sig)}}}' for body, sig in rows]
            return [message_text(body) for body, _ in rows]

    def close(self) -> None:
        self._db.close()
