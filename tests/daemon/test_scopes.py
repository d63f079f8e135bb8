"""Credentials and their scopes against real nodes: what a read, write or admin token and
the client-auth code may do on every HTTP route and gRPC method, and path requests refused
to tokens. The token file and token commands are in test_tokens.py.

The expectations here are written out by hand (the spec, see SECURITY.md), not derived
from `kachery_daemon.scopes`, so a change to that table has to change them too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import grpc
import pytest
import requests
from conftest import free_port
from node_fixtures import NodeProcess
from token_helpers import make_token

from kachery_core.grpc_api import kachery_pb2 as pb
from kachery_core.grpc_api import kachery_pb2_grpc as pb_grpc

HELLO = b"scoped hello"
HELLO_SHA1 = hashlib.sha1(HELLO).hexdigest()
SUBFEED = "a" * 40
PATHS_ONLY_LOCAL = (
    "paths are only accepted from local users with the client-auth code; send the bytes instead"
)
CREDENTIALS = ("none", "read", "write", "admin", "code")
ALLOWED = {
    "none": set(CREDENTIALS),
    "read": {"read", "write", "admin", "code"},
    "write": {"write", "admin", "code"},
    "admin": {"admin", "code"},
    "code": {"code"},
}
"""Scope an operation needs -> the credentials that may do it."""
DOING = {  # what a scope refusal says the operation is
    "/store": "storing",
    "/stats": "reading the node's stats",
    "/mutable/set": "setting a mutable",
}


@pytest.fixture
def scoped(make_node, tmp_path: Path) -> Tuple[NodeProcess, Dict[str, Optional[str]]]:
    """A node serving HTTP and gRPC, one object stored, and a credential of each kind."""
    port = free_port()
    node = make_node("--grpc-port", str(port), "--auth-rotate-seconds", "300")
    node.grpc_port = port  # type: ignore[attr-defined]
    stored = requests.post(node.url + "/store", data=HELLO, headers=node.headers(), timeout=30)
    assert stored.json()["sha1"] == HELLO_SHA1
    credentials: Dict[str, Optional[str]] = {
        "none": None,
        "code": node.auth_code(),
        **{scope: make_token(node, f"{scope} token", scope) for scope in ("read", "admin")},
        "write": make_token(node, "default token"),  # no --scope: write
    }
    return node, credentials


def _feed(node: NodeProcess, name: str) -> str:
    doc = requests.post(
        node.url + "/feed/createFeed", json={"feedName": name}, headers=node.headers(), timeout=30
    ).json()
    return str(doc["feedId"])


# -- HTTP ------------------------------------------------------------------------------

HttpCase = Tuple[str, str, str, Callable[[NodeProcess, str, Path], Any], int]
"""(method, route, scope needed, body for (node, credential name, tmp dir), status if allowed)"""


def _source(tmp: Path, who: str) -> Dict[str, Any]:
    src = tmp / f"by-path-{who}.txt"
    src.write_text(f"named by its path, sent with {who}")
    st = src.stat()
    return {"localFilePath": str(src), "size": st.st_size, "mtime": st.st_mtime}


def _batch_body(text: str) -> bytes:
    """A `/storeFiles` body carrying one object."""
    data = text.encode()
    head = json.dumps({"type": "file", "sha1": hashlib.sha1(data).hexdigest(), "size": len(data)})
    end = json.dumps({"type": "finished"})
    return f"{len(head)}#{head}".encode() + data + f"{len(end)}#{end}".encode()


HTTP_CASES: List[HttpCase] = [
    ("GET", "/probe", "none", lambda n, w, t: None, 200),
    ("POST", "/loadFile", "read", lambda n, w, t: {"fileKey": {"sha1": HELLO_SHA1}}, 200),
    # loading is reading, through a channel too: this node has none, so a framed error
    (
        "POST",
        "/loadFile",
        "read",
        lambda n, w, t: {"fileKey": {"sha1": "5" * 40}, "channelName": "lab"},
        200,
    ),
    ("POST", "/downloadFileData", "read", lambda n, w, t: {"fileKey": {"sha1": HELLO_SHA1}}, 200),
    ("POST", "/downloadFiles", "read", lambda n, w, t: {"files": [{"sha1": HELLO_SHA1}]}, 200),
    ("POST", "/mutable/get", "read", lambda n, w, t: {"key": "k"}, 200),
    ("POST", "/feed/getFeedId", "read", lambda n, w, t: {"feedName": "main"}, 200),
    ("POST", "/feed/getFeedInfo", "read", lambda n, w, t: {"feedId": _feed(n, "main")}, 200),
    (
        "POST",
        "/feed/getNumLocalMessages",
        "read",
        lambda n, w, t: {"feedId": _feed(n, "main"), "subfeedHash": SUBFEED},
        200,
    ),
    (
        "POST",
        "/feed/watchForNewMessages",
        "read",
        lambda n, w, t: {
            "subfeedWatches": {"w": {"feedId": _feed(n, "main"), "subfeedHash": SUBFEED}},
            "waitMsec": 0,
        },
        200,
    ),
    ("POST", "/store", "write", lambda n, w, t: f"stored with {w}".encode(), 200),
    ("POST", "/storeFiles", "write", lambda n, w, t: _batch_body(f"batch from {w}"), 200),
    ("POST", "/mutable/set", "write", lambda n, w, t: {"key": f"k-{w}", "value": w}, 200),
    ("POST", "/mutable/delete", "write", lambda n, w, t: {"key": "k"}, 200),
    ("POST", "/feed/createFeed", "write", lambda n, w, t: {"feedName": f"by {w}"}, 200),
    ("POST", "/feed/deleteFeed", "write", lambda n, w, t: {"feedId": _feed(n, f"gone {w}")}, 200),
    (
        "POST",
        "/feed/appendMessages",
        "write",
        lambda n, w, t: {"feedId": _feed(n, "main"), "subfeedHash": SUBFEED, "messages": [w]},
        200,
    ),
    # allowed, then refused for what it is: this node belongs to no channel
    (
        "POST",
        "/channel/upload",
        "write",
        lambda n, w, t: {"fileKey": {"sha1": HELLO_SHA1}, "channelName": "lab"},
        400,
    ),
    ("GET", "/stats", "admin", lambda n, w, t: None, 200),
    ("GET", "/metrics", "admin", lambda n, w, t: None, 200),
    # the web pages check their own credential (tests/daemon/test_ui_access.py): the API's
    # header check lets every request through to them
    ("GET", "/ui", "none", lambda n, w, t: None, 200),
    ("POST", "/storeFile", "code", lambda n, w, t: _source(t, w), 200),
    ("POST", "/linkFile", "code", lambda n, w, t: _source(t, w), 200),
    (
        "POST",
        "/storeLocalFiles",
        "code",
        lambda n, w, t: {"localFilePaths": [_source(t, w)["localFilePath"]]},
        200,
    ),
]


def test_every_http_route_with_every_credential(scoped, tmp_path: Path) -> None:
    node, credentials = scoped
    for method, route, needs, body, status in HTTP_CASES:
        for who in CREDENTIALS:
            headers = (
                {} if credentials[who] is None else {"KACHERY-CLIENT-AUTH-CODE": credentials[who]}
            )
            doc = body(node, who, tmp_path)
            kwargs: Dict[str, Any] = {"data": doc} if isinstance(doc, bytes) else {"json": doc}
            response = requests.request(
                method, node.url + route, headers=headers, timeout=30, **kwargs
            )
            where = f"{method} {route} with {who}: {response.status_code} {response.text[:200]}"
            if who in ALLOWED[needs]:
                assert response.status_code == status, where
                continue
            assert response.status_code == 403, where
            assert response.headers["KACHERY-ERROR-TYPE"] == "refused", where
            reason = response.text.strip()
            assert "\n" not in reason, where
            if who == "none":
                assert "missing KACHERY-CLIENT-AUTH-CODE" in reason, where
            elif needs == "code":
                assert reason == PATHS_ONLY_LOCAL, where
            else:
                assert reason.startswith(f"this access token has scope '{who}'; "), where
                assert reason.endswith(f" needs '{needs}'"), where
                if route in DOING:
                    assert f"; {DOING[route]} needs" in reason, where


def test_refusals_name_the_scope_needed(scoped, tmp_path: Path) -> None:
    node, credentials = scoped
    headers = {"KACHERY-CLIENT-AUTH-CODE": credentials["read"]}
    refused = requests.post(node.url + "/store", data=b"x", headers=headers, timeout=30)
    assert refused.status_code == 403
    assert refused.text.strip() == "this access token has scope 'read'; storing needs 'write'"
    headers = {"KACHERY-CLIENT-AUTH-CODE": credentials["write"]}
    stats = requests.get(node.url + "/stats", headers=headers, timeout=30)
    assert stats.text.strip() == (
        "this access token has scope 'write'; reading the node's stats needs 'admin'"
    )
    # a path request with a token is refused before the node looks at the path
    src = tmp_path / "secret.txt"
    src.write_text("not for token holders")
    doc = {"localFilePath": str(src)}
    for who in ("read", "write", "admin"):
        headers = {"KACHERY-CLIENT-AUTH-CODE": credentials[who]}
        answer = requests.post(node.url + "/storeFile", json=doc, headers=headers, timeout=30)
        assert (answer.status_code, answer.text.strip()) == (403, PATHS_ONLY_LOCAL)
    sha1 = hashlib.sha1(src.read_bytes()).hexdigest()
    assert not (node.storage_dir / "sha1" / sha1[:2] / sha1[2:4] / sha1[4:6] / sha1).exists()
    # an unknown route: a valid credential of any scope hears that it does not exist
    headers = {"KACHERY-CLIENT-AUTH-CODE": credentials["read"]}
    assert requests.post(node.url + "/nothing", headers=headers, timeout=30).status_code == 404
    assert requests.post(node.url + "/nothing", timeout=30).status_code == 403


# -- gRPC ------------------------------------------------------------------------------

GrpcCase = Tuple[str, str, Callable[[Any, NodeProcess, str, Path, Any], Any]]
"""(method, scope needed, call(stub, node, credential name, tmp dir, metadata))"""


def _grpc_feed(node: NodeProcess, name: str) -> pb.Subfeed:
    return pb.Subfeed(feed_id=_feed(node, name), subfeed_hash=SUBFEED)


def _link(stub: Any, tmp: Path, who: str, metadata: Any) -> Any:
    src = _source(tmp, f"grpc-{who}")
    request = pb.LinkRequest(path=src["localFilePath"], size=src["size"], mtime=src["mtime"])
    return stub.Link(request, metadata=metadata)


GRPC_CASES: List[GrpcCase] = [
    ("Probe", "none", lambda s, n, w, t, m: s.Probe(pb.ProbeRequest(), metadata=m)),
    ("Load", "read", lambda s, n, w, t, m: list(s.Load(pb.FileKey(sha1=HELLO_SHA1), metadata=m))),
    (
        "ReadRange",
        "read",
        lambda s, n, w, t, m: list(
            s.ReadRange(
                pb.RangeRequest(file_key=pb.FileKey(sha1=HELLO_SHA1), start=1, end=4), metadata=m
            )
        ),
    ),
    (
        "GetMutable",
        "read",
        lambda s, n, w, t, m: s.GetMutable(pb.MutableKey(key_json='"k"'), metadata=m),
    ),
    (
        "GetFeedId",
        "read",
        lambda s, n, w, t, m: s.GetFeedId(pb.FeedName(feed_name="main"), metadata=m),
    ),
    (
        "GetNumMessages",
        "read",
        lambda s, n, w, t, m: s.GetNumMessages(_grpc_feed(n, "main"), metadata=m),
    ),
    (
        "WatchForNewMessages",
        "read",
        lambda s, n, w, t, m: s.WatchForNewMessages(
            pb.WatchRequest(watches={"w": pb.SubfeedWatch(subfeed=_grpc_feed(n, "main"))}),
            metadata=m,
        ),
    ),
    (
        "Store",
        "write",
        lambda s, n, w, t, m: s.Store(iter([pb.DataChunk(data=f"by {w}".encode())]), metadata=m),
    ),
    (
        "SetMutable",
        "write",
        lambda s, n, w, t, m: s.SetMutable(
            pb.SetMutableRequest(key_json='"g"', value_json=json.dumps(w)), metadata=m
        ),
    ),
    (
        "DeleteMutable",
        "write",
        lambda s, n, w, t, m: s.DeleteMutable(pb.MutableKey(key_json='"g"'), metadata=m),
    ),
    (
        "CreateFeed",
        "write",
        lambda s, n, w, t, m: s.CreateFeed(pb.FeedName(feed_name=f"g {w}"), metadata=m),
    ),
    (
        "DeleteFeed",
        "write",
        lambda s, n, w, t, m: s.DeleteFeed(pb.FeedId(feed_id=_feed(n, f"g gone {w}")), metadata=m),
    ),
    (
        "AppendMessages",
        "write",
        lambda s, n, w, t, m: s.AppendMessages(
            pb.AppendMessagesRequest(subfeed=_grpc_feed(n, "main"), messages_json=[json.dumps(w)]),
            metadata=m,
        ),
    ),
    ("Link", "code", lambda s, n, w, t, m: _link(s, t, w, m)),
]


def test_every_grpc_method_with_every_credential(scoped, tmp_path: Path) -> None:
    node, credentials = scoped
    with grpc.insecure_channel(f"127.0.0.1:{node.grpc_port}") as channel:  # type: ignore[attr-defined]
        stub = pb_grpc.KacheryStub(channel)
        for method, needs, call in GRPC_CASES:
            for who in CREDENTIALS:
                value = credentials[who]
                metadata = () if value is None else (("kachery-client-auth-code", value),)
                where = f"gRPC {method} with {who}"
                if who in ALLOWED[needs]:
                    call(stub, node, who, tmp_path, metadata)  # no error at all
                    continue
                with pytest.raises(grpc.RpcError) as caught:
                    call(stub, node, who, tmp_path, metadata)
                error: Any = caught.value
                trailers = dict(error.trailing_metadata() or ())
                assert trailers.get("kachery-error-type") == "refused", where
                details = error.details()
                if who == "none":
                    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, where
                    continue
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED, where
                if needs == "code":
                    assert details == PATHS_ONLY_LOCAL, where
                else:
                    assert details.startswith(f"this access token has scope '{who}'; "), where
                    assert details.endswith(f" needs '{needs}'"), details


def test_every_route_and_rpc_is_in_the_scope_table(tmp_path: Path) -> None:
    """A route or RPC added without an entry would be open to local users only."""
    from kachery_core.store.local import LocalStorage
    from kachery_daemon.auth import RotatingAuthCode
    from kachery_daemon.feeds import FeedStore
    from kachery_daemon.grpc_service import KacheryService
    from kachery_daemon.http_api import create_app
    from kachery_daemon.mutables import MutableStore
    from kachery_daemon.node import Node
    from kachery_daemon.node_files import load_identity
    from kachery_daemon.scopes import OPERATIONS

    node = Node(
        storage=LocalStorage(tmp_path),
        identity=load_identity(tmp_path, None),
        auth=RotatingAuthCode(tmp_path),
        mutables=MutableStore(tmp_path / "mutables.db"),
        feeds=FeedStore(tmp_path / "feeds.db"),
    )
    routes = {r.canonical.lstrip("/") for r in create_app(node).router.resources()}
    routes = {"ui" if r.startswith("ui") else r for r in routes}  # the pages: one entry
    assert routes == set(OPERATIONS)  # and nothing in the table that is not served
    rpcs = pb.DESCRIPTOR.services_by_name["Kachery"].methods_by_name
    for name in rpcs:
        assert getattr(KacheryService, name).operation in OPERATIONS, name
    assert {name for name, _, _ in GRPC_CASES} == set(rpcs)
    assert {route for _, route, *_ in HTTP_CASES} == {"/" + r for r in OPERATIONS}
