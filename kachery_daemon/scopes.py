"""What each credential may do: the one table of operations and the scope each needs.

Every request a node serves is one operation, named after its HTTP route without the
slash ("store", "mutable/get", ...); the gRPC methods name the same operations (gRPC
`Load` and `ReadRange` are "downloadFileData", `Link` is "linkFile"). Both APIs ask
`Node.authorize(credential, operation)`, which looks the operation up here, so a rule
holds on every API and no route checks credentials on its own.

Scopes are ranked; each may do what the ones before it may:

    public  no credential at all (the probe)
    read    an access token made with --scope read: load, read bytes, probe, get
            mutables, read feeds; loading through a channel is reading too
    write   the default token scope: also store, set/delete mutables, write feeds,
            upload to a channel
    admin   also the node's counters (/stats)
    local   the rotating client-auth code, i.e. a local user of the node's machine:
            also requests that name a path on the node's machine (/storeFile,
            /storeLocalFiles, /linkFile, gRPC Link), which no token may send
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

PUBLIC = "public"
READ = "read"
WRITE = "write"
ADMIN = "admin"
LOCAL = "local"

RANKS: Tuple[str, ...] = (PUBLIC, READ, WRITE, ADMIN, LOCAL)
"""Lowest first: a credential of a scope may do every operation needing it or one before."""
TOKEN_SCOPES: Tuple[str, ...] = (READ, WRITE, ADMIN)
"""The scopes an access token may have (`kachery-daemon token create --scope`)."""
DEFAULT_TOKEN_SCOPE = WRITE
"""The scope of a new token without --scope, and of a token record written before scopes."""

PATHS_ARE_LOCAL = (
    "paths are only accepted from local users with the client-auth code; send the bytes instead"
)


class Operation(NamedTuple):
    scope: str
    """The least scope that may do it."""
    doing: str
    """What it does, for a refusal: "this access token has scope 'read'; storing needs ..."."""


OPERATIONS: Dict[str, Operation] = {
    "probe": Operation(PUBLIC, "probing"),
    "loadFile": Operation(READ, "loading"),  # through a channel too: loading is reading
    "downloadFileData": Operation(READ, "reading bytes"),
    "downloadFiles": Operation(READ, "reading bytes"),  # a batch of downloadFileData
    "mutable/get": Operation(READ, "reading a mutable"),
    "feed/getFeedId": Operation(READ, "looking up a feed"),
    "feed/getFeedInfo": Operation(READ, "reading a feed"),
    "feed/getNumLocalMessages": Operation(READ, "reading a feed"),
    "feed/watchForNewMessages": Operation(READ, "reading a feed"),
    "store": Operation(WRITE, "storing"),
    "storeFiles": Operation(WRITE, "storing"),  # a batch of /store
    "mutable/set": Operation(WRITE, "setting a mutable"),
    "mutable/delete": Operation(WRITE, "deleting a mutable"),
    "feed/createFeed": Operation(WRITE, "creating a feed"),
    "feed/deleteFeed": Operation(WRITE, "deleting a feed"),
    "feed/appendMessages": Operation(WRITE, "appending to a feed"),
    "channel/upload": Operation(WRITE, "uploading to a channel"),
    "stats": Operation(ADMIN, "reading the node's stats"),
    "metrics": Operation(ADMIN, "reading the node's metrics"),
    "ui": Operation(PUBLIC, "the web pages"),  # each checks its viewer (ui/access.py)
    "storeFile": Operation(LOCAL, "storing a file by its path"),
    "storeLocalFiles": Operation(LOCAL, "storing files by their paths"),  # a batch of /storeFile
    "linkFile": Operation(LOCAL, "linking a file by its path"),
}
"""Operation -> the scope it needs. A route or RPC missing here is refused to all but local
users (`needed`), and tests/daemon/test_scopes.py fails until it is added."""

ANY_ROUTE = Operation(READ, "this request")
"""A request that matches no route: any valid credential, then a 404 or 405."""


def needed(operation: Optional[str]) -> Operation:
    """The entry for `operation` (None: no such route); an unknown name needs LOCAL."""
    if operation is None:
        return ANY_ROUTE
    return OPERATIONS.get(operation, Operation(LOCAL, operation))


def allows(scope: str, operation: Optional[str]) -> bool:
    return RANKS.index(scope) >= RANKS.index(needed(operation).scope)


def refusal(scope: str, operation: Optional[str]) -> str:
    """The one-line reason a credential of `scope` may not do `operation`."""
    need = needed(operation)
    if need.scope == LOCAL:
        if operation in OPERATIONS:
            return PATHS_ARE_LOCAL
        return f"{operation!r} is only open to local users with the client-auth code"
    return f"this access token has scope {scope!r}; {need.doing} needs {need.scope!r}"
