"""The Python API, `import kachery_client as kc`, in-process on the embedded backend."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

import kachery_client as kc
from kachery_core.store.layout import StorageLayout


def test_text_json_bytes(kenv) -> None:
    uri = kc.store_text("Hello, world!")
    assert uri == "sha1://943a702d06f34599aee1f8da8ef9f7296031d699/file.txt"
    assert kc.load_text(uri) == "Hello, world!"
    assert kc.load_bytes(uri, 7, 12) == b"world"
    value = {"b": [1, 2.5, None, "ü"], "a": {"nested": True}}
    juri = kc.store_json(value, label="params.json")
    assert juri.endswith("/params.json")
    assert kc.load_json(juri) == value
    assert list(kc.load_json(juri)) == ["b", "a"]  # key order kept


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.int16).reshape(3, 4),
        np.linspace(0, 1, 7, dtype=np.float64),
        np.zeros((2, 0, 3), dtype=np.complex64),
        np.array([[True, False]]),
        np.arange(6, dtype=">u4").reshape(2, 3),
    ],
)
def test_npy_round_trip(kenv, array: np.ndarray) -> None:
    uri = kc.store_npy(array)
    back = kc.load_npy(uri)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


def test_npy_never_pickles(kenv) -> None:
    with pytest.raises(kc.InvalidInputError):
        kc.store_npy(np.array([{"a": 1}, None], dtype=object))
    import pickle

    # An object array written by someone else is refused on load, not unpickled.
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    uri = kc.default_client().store_bytes(buffer.getvalue(), "evil.npy")
    with pytest.raises(ValueError):
        kc.load_npy(uri)
    assert pickle.loads(pickle.dumps(1)) == 1


def test_pkl_round_trip(kenv) -> None:
    value = {"set": {1, 2}, "tuple": (1, "x"), "bytes": b"\x00\xff"}
    assert kc.load_pkl(kc.store_pkl(value)) == value


def test_store_link_load_file(kenv, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(b"\x01\x02" * 5000)
    uri = kc.store_file(src)
    assert uri.endswith("/data.bin")
    path = kc.load_file(uri)
    assert Path(path).read_bytes() == src.read_bytes()
    dest = tmp_path / "copy.bin"
    assert kc.load_file(uri, dest=dest) == str(dest)
    assert dest.read_bytes() == src.read_bytes()
    other = tmp_path / "other.bin"
    other.write_bytes(b"linked content")
    luri = kc.link_file(other)
    assert kc.load_file(luri) == str(other.resolve())


def test_missing_raises_naming_uri_and_place(kenv) -> None:
    missing = "sha1://" + "5" * 40 + "/gone.json"
    for loader in (
        kc.load_file,
        kc.load_text,
        kc.load_json,
        kc.load_npy,
        kc.load_pkl,
        kc.load_bytes,
    ):
        with pytest.raises(kc.NotFoundError) as info:
            loader(missing)
        assert missing in str(info.value)
        assert kenv["KACHERY_STORAGE_DIR"] in str(info.value)
    with pytest.raises(kc.InvalidUriError):
        kc.load_text("not-a-uri")


def test_mutables_unsupported_on_embedded_backend(kenv) -> None:
    for call in (lambda: kc.get("k"), lambda: kc.set("k", 1), lambda: kc.delete("k")):
        with pytest.raises(kc.UnsupportedOperation) as info:
            call()
        assert "'local' backend" in str(info.value) and "kachery-daemon" in str(info.value)


def test_client_object_and_context_manager(kenv, tmp_path: Path) -> None:
    with kc.Client(storage_dir=str(tmp_path / "s")) as client:
        uri = client.store_text("scoped")
        assert client.selection.name == "local"
        assert client.load_text(uri) == "scoped"
        sha1 = hashlib.sha1(b"scoped").hexdigest()
        assert StorageLayout(tmp_path / "s").object_path(sha1).exists()


def test_default_client_follows_environment(kenv, tmp_path: Path, monkeypatch) -> None:
    first = kc.default_client()
    assert kc.default_client() is first
    monkeypatch.setenv("KACHERY_STORAGE_DIR", str(tmp_path / "moved"))
    second = kc.default_client()
    assert second is not first
    uri = kc.store_text("moved")
    assert StorageLayout(tmp_path / "moved").object_path(kc.parse_uri(uri).sha1).exists()


def test_the_module_namespace_is_its_api() -> None:
    """Every public attribute is in __all__ (submodules aside), and dir() shows only those."""
    import types

    exported = set(kc.__all__)
    public = {
        name
        for name, value in vars(kc).items()
        if not name.startswith("_")
        and not (
            isinstance(value, types.ModuleType) and value.__name__.startswith("kachery_client.")
        )
    }
    assert public <= exported, public - exported
    assert all(hasattr(kc, name) for name in exported)
    shown = set(dir(kc))
    assert exported <= shown
    assert {name for name in shown - exported if not name.startswith("__")} == set()
    for helper in ("Any", "Optional", "Tuple", "os", "annotations"):
        assert not hasattr(kc, helper), helper


def test_client_names_its_backend_in_either_spelling(kenv) -> None:
    for client in (
        kc.Client("offline"),
        kc.Client(backend="offline"),
        kc.Client(transport="offline"),
    ):
        assert client.config.backend == "offline"
        assert client.config.source("backend") == "Client() argument"
    with pytest.raises(kc.ConfigError, match="both 'backend' and 'transport'"):
        kc.Client("offline", transport="local")
    with kc.Client(backend="local") as client:
        uri = client.store_text("chosen by name")
        assert client.selection.reason == "chosen by Client() argument"
        assert client.load_text(uri) == "chosen by name"
