"""Directories against hostile peers: a proxy that alters the directory object, directory
objects (stored honestly, so their hash matches) whose names try to leave the destination,
entries that misstate sizes, and an oversized directory object.

Real node and proxy processes on loopback; the client is the `remote` backend with a cache
of its own, so the directory object always comes over the socket.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple

import pytest
import requests
from dataset_helpers import backend_env, one_error_line, start_node, tree_listing
from node_fixtures import NodeProcess
from proxies import proxy_launcher

from kachery_core.store.layout import StorageLayout

PROXY = str(Path(__file__).parent.parent / "mitm_proxy.py")
DATA = b"the honest bytes\n"
DATA_SHA1 = hashlib.sha1(DATA).hexdigest()


class Peer(NamedTuple):
    node: NodeProcess
    token: str


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    from dataset_helpers import make_token

    node = start_node(tmp_path_factory.mktemp("datasets-hostile"))
    try:
        assert _store(node, DATA) == DATA_SHA1
        yield Peer(node, make_token(node))
    finally:
        node.stop()


def _store(node: NodeProcess, data: bytes) -> str:
    """Store bytes on the node as they are (a peer may store any object it likes)."""
    answer = requests.post(node.url + "/store", data=data, headers=node.headers(), timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["sha1"])


def _env(peer: Peer, tmp_path: Path) -> Dict[str, str]:
    return backend_env("remote", peer.node, tmp_path / "cache", token=peer.token)


def _entry(size: int = len(DATA), sha1: str = DATA_SHA1) -> Dict[str, Any]:
    return {"size": size, "sha1": sha1}


def _nested(depth: int) -> Dict[str, Any]:
    doc: Dict[str, Any] = {"files": {"leaf.txt": _entry()}, "dirs": {}}
    for _ in range(depth):
        doc = {"files": {}, "dirs": {"d": doc}}
    return doc


def _workspace(tmp_path: Path) -> Path:
    """A folder with files a bad tree might try to reach: nothing in it may change."""
    work = tmp_path / "work"
    (work / "keep").mkdir(parents=True)
    (work / "keep" / "passwd").write_text("mine\n")
    (work / "b").write_text("a file named b\n")
    return work


HOSTILE: List[Any] = [
    pytest.param({"files": {"..": _entry()}}, "relative path component", id="file-dotdot"),
    pytest.param({"dirs": {"..": {"files": {"passwd": _entry()}}}}, "relative", id="dir-dotdot"),
    pytest.param({"files": {".": _entry()}}, "relative path component", id="dot"),
    pytest.param({"files": {"a/b": _entry()}}, "path separator", id="slash"),
    pytest.param({"files": {"..\\b": _entry()}}, "path separator", id="backslash"),
    pytest.param({"files": {"/etc/passwd": _entry()}}, "path separator", id="absolute"),
    pytest.param(
        {"dirs": {"/tmp": {"files": {"x": _entry()}}}}, "path separator", id="absolute-dir"
    ),
    pytest.param({"files": {"": _entry()}}, "empty", id="empty-name"),
    pytest.param({"files": {"bell\x07.txt": _entry()}}, "control characters", id="bell"),
    pytest.param({"files": {"two\nlines": _entry()}}, "control characters", id="newline"),
    pytest.param({"files": {"esc\x1b[2J": _entry()}}, "control characters", id="escape"),
    pytest.param(
        {"files": {"x": _entry()}, "dirs": {"x": {"files": {}}}},
        "both a file and a directory",
        id="file-and-dir",
    ),
    pytest.param({"files": {"x": _entry(size=-1)}}, "not a byte count", id="negative-size"),
    pytest.param({"files": {"x": _entry(sha1="../../etc")}}, "not a SHA-1", id="bad-sha1"),
    pytest.param(_nested(300), "deeper than 256", id="nested-300"),
]


@pytest.mark.parametrize("doc,why", HOSTILE)
def test_a_directory_object_whose_names_escape_is_refused_before_writing(
    peer: Peer, tmp_path: Path, doc: Dict[str, Any], why: str, client: Any
) -> None:
    import kachery_client as kc

    sha1 = _store(peer.node, json.dumps(doc).encode())  # honest: its hash matches
    uri = f"sha1dir://{sha1}.evil"
    work = _workspace(tmp_path)
    before = tree_listing(work)
    for attempt in (
        lambda: client.load_dir(uri, work / "out"),
        lambda: client.load_dir(uri, work / "keep", force=True),
        lambda: client.read_dir(uri),
    ):
        with pytest.raises(kc.IntegrityError) as caught:
            attempt()
        message = str(caught.value)
        assert uri in message and "not a usable directory object" in message, message
        assert why in message and "\n" not in message, message
    assert tree_listing(work) == before  # no dest, no staging folder, nothing else touched
    assert (work / "keep" / "passwd").read_text() == "mine\n"


@pytest.mark.parametrize("case", ["file-dotdot", "newline", "nested-300"])
def test_the_cli_refuses_them_in_one_line(peer: Peer, cli: Any, tmp_path: Path, case: str) -> None:
    doc, why = next(p.values for p in HOSTILE if p.id == case)
    sha1 = _store(peer.node, json.dumps(doc).encode())
    uri = f"sha1dir://{sha1}.evil"
    loaded = cli("load-file", "-r", uri, "--dest", str(tmp_path / "out"), env=_env(peer, tmp_path))
    line = one_error_line(loaded)
    assert uri in line and why in line and loaded.stdout == "", line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def client(peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kenv: Any) -> Iterator[Any]:
    """A Python client of the node through the remote backend (in this process)."""
    import kachery_client as kc

    for key, value in _env(peer, tmp_path).items():
        if key.startswith("KACHERY_"):
            monkeypatch.setenv(key, value)
    with kc.Client() as made:
        yield made


def test_deep_but_allowed_nesting_loads(peer: Peer, cli: Any, tmp_path: Path) -> None:
    sha1 = _store(peer.node, json.dumps(_nested(200)).encode())
    dest = tmp_path / "deep"
    loaded = cli(
        "load-file", "-r", f"sha1dir://{sha1}", "--dest", str(dest), env=_env(peer, tmp_path)
    )
    assert loaded.returncode == 0, loaded
    assert dest.joinpath(*(["d"] * 200), "leaf.txt").read_bytes() == DATA


def test_an_altered_directory_object_is_refused(
    peer: Peer, cli: Any, tmp_path: Path, start_proxy: Any
) -> None:
    doc = {"files": {"a.txt": _entry()}, "dirs": {"sub": {"files": {"b.txt": _entry()}}}}
    sha1 = _store(peer.node, json.dumps(doc).encode())
    uri = f"sha1dir://{sha1}.honest"
    proxy_port = start_proxy(peer.node.port, tmp_path / "marker")
    env = dict(_env(peer, tmp_path), KACHERY_DAEMON_PORT=str(proxy_port))
    work = _workspace(tmp_path)
    before = tree_listing(work)
    loaded = cli("load-file", "-r", uri, "--dest", str(work / "out"), env=env)
    line = one_error_line(loaded)
    assert f"the directory object of {uri}" in line and "hash to" in line, line
    assert f"127.0.0.1:{proxy_port}" in line  # where the bytes came from
    assert tree_listing(work) == before
    for args in (["ls", uri], ["cat-file", uri + "/sub/b.txt"], ["load-file", uri + "/a.txt"]):
        shown = cli(*args, env=env)
        assert f"the directory object of {uri}" in one_error_line(shown), args
        assert shown.stdout == ""
    cache = Path(env["KACHERY_STORAGE_DIR"])
    assert not StorageLayout(cache).object_path(sha1).exists()  # nothing altered kept


def test_an_entry_that_misstates_its_size_is_refused(peer: Peer, cli: Any, tmp_path: Path) -> None:
    """The bytes are found by hash, so they are right; but a directory object whose entry
    says another size describes its tree untruthfully: the file is refused, by name."""
    doc = {"files": {"fine.txt": _entry()}, "dirs": {"sub": {"files": {"liar.txt": _entry(999)}}}}
    sha1 = _store(peer.node, json.dumps(doc).encode())
    uri = f"sha1dir://{sha1}.liar"
    env = _env(peer, tmp_path)
    work = _workspace(tmp_path)
    before = tree_listing(work)
    loaded = cli("load-file", "-r", uri, "--dest", str(work / "out"), env=env)
    line = one_error_line(loaded)
    assert "'sub/liar.txt' says 999 bytes" in line and f"has {len(DATA)}" in line, line
    assert tree_listing(work) == before

    existing = work / "keep"  # --force into a folder: checked before anything is written
    forced = cli("load-file", "-r", uri, "--dest", str(existing), "--force", env=env)
    assert "'sub/liar.txt'" in one_error_line(forced)
    assert tree_listing(work) == before

    one = cli("load-file", uri + "/sub/liar.txt", "--dest", str(work / "one.txt"), env=env)
    assert "'sub/liar.txt' says 999 bytes" in one_error_line(one)
    assert tree_listing(work) == before
    fine = cli("load-file", uri + "/fine.txt", "--dest", str(tmp_path / "fine.txt"), env=env)
    assert fine.returncode == 0 and (tmp_path / "fine.txt").read_bytes() == DATA, fine


def test_an_oversized_directory_object_is_refused_without_reading_it_whole(
    peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kenv: Any
) -> None:
    import kachery_client as kc
    from kachery_client.directories import operations as datasets

    files = {f"f{i:05d}": _entry() for i in range(3000)}
    data = json.dumps({"files": files}).encode()
    sha1 = _store(peer.node, data)
    limit = 10_000
    monkeypatch.setattr(datasets, "MAX_DIRECTORY_OBJECT_BYTES", limit)
    for key, value in _env(peer, tmp_path).items():
        if key.startswith("KACHERY_"):
            monkeypatch.setenv(key, value)
    with kc.Client() as client:
        transport = client.transport
        read: List[int] = []
        real_open_range = transport.open_range

        def counting_open_range(*args: Any, **kwargs: Any) -> Any:
            stream = real_open_range(*args, **kwargs)
            return _Counting(stream, read)

        monkeypatch.setattr(transport, "open_range", counting_open_range)
        with pytest.raises(kc.IntegrityError) as caught:
            client.load_dir(f"sha1dir://{sha1}.huge", tmp_path / "out")
        assert f"sha1dir://{sha1}.huge is larger than {limit} bytes" in str(caught.value)
        assert 0 < sum(read) <= limit + 1 < len(data)  # never more than the cap
        assert not (tmp_path / "out").exists()


class _Counting(io.RawIOBase):
    """The node's stream, counting the bytes the reader takes from it."""

    def __init__(self, stream: Any, counts: List[int]) -> None:
        super().__init__()
        self._stream = stream
        self._counts = counts

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if hasattr(self._stream, "readinto"):
            n = int(self._stream.readinto(buffer))
        else:
            data = self._stream.read(len(buffer))
            n = len(data)
            memoryview(buffer).cast("B")[:n] = data
        self._counts.append(n)
        return n

    def close(self) -> None:
        self._stream.close()
        super().close()


@pytest.fixture
def start_proxy() -> Iterator[Any]:
    """tests/mitm_proxy.py in http mode: every read's bytes replaced on the way back."""
    with proxy_launcher(PROXY) as start:
        yield lambda upstream_port, marker: start("http", upstream_port, marker)
