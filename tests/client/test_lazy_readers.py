"""pandas, zarr, xarray and h5py read stored files by URI through the fsspec filesystem
(registered by the `fsspec.specs` entry points: no import of kachery in the reading code),
on the embedded backend and through a real node over `remote`."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec", reason="fsspec is a dependency of kachery")


def _tree(root: Path) -> Path:
    """A recording folder: a CSV, a Parquet table, an HDF5 file and a zarr store."""
    pd = pytest.importorskip("pandas", reason="pandas has no release for this Python")
    (root / "sorting").mkdir(parents=True)
    pd.DataFrame({"unit": [1, 2, 3], "rate": [4.5, 0.5, 9.0]}).to_csv(
        root / "sorting" / "units.csv", index=False
    )
    return root


def _store_tree(cli, root: Path, env: Dict[str, str]) -> str:
    stored = cli("store-file", "-r", str(root), env=env)
    assert stored.returncode == 0, stored
    return stored.stdout.strip()


def _zarr_folder(path: Path) -> None:
    zarr = pytest.importorskip("zarr", reason="zarr has no release for this Python")
    group = zarr.open_group(str(path), mode="w")
    make = getattr(group, "create_array", None) or group.create_dataset
    array = make("x", shape=(1000,), chunks=(100,), dtype="i4")
    array[:] = np.arange(1000, dtype="i4")


def test_pandas_reads_csv_and_parquet_by_uri(cli, kenv, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas has no release for this Python")
    root = _tree(tmp_path / "rec")
    pytest.importorskip("pyarrow", reason="pyarrow has no wheel for this Python")
    pd.DataFrame({"t": np.arange(5.0)}).to_parquet(root / "times.parquet")
    uri = _store_tree(cli, root, kenv)
    units = pd.read_csv(uri + "/sorting/units.csv")
    assert list(units["unit"]) == [1, 2, 3]
    assert list(pd.read_parquet(uri + "/times.parquet")["t"]) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_zarr_and_xarray_open_a_zarr_folder_stored_with_store_file_r(
    cli, kenv, tmp_path: Path
) -> None:
    zarr = pytest.importorskip("zarr", reason="zarr has no release for this Python")
    xr = pytest.importorskip("xarray", reason="xarray has no release for this Python")
    root = tmp_path / "rec"
    root.mkdir()
    _zarr_folder(root / "lfp.zarr")
    xr.Dataset({"v": ("t", np.arange(6.0))}).to_zarr(str(root / "ds.zarr"), mode="w")
    uri = _store_tree(cli, root, kenv)
    group = zarr.open_group(uri + "/lfp.zarr", mode="r")
    assert list(group["x"][995:]) == [995, 996, 997, 998, 999]
    assert list(xr.open_zarr(uri + "/ds.zarr")["v"].values) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_h5py_reads_through_fsspec_open(cli, kenv, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py", reason="h5py has no wheel for this Python")
    root = tmp_path / "rec"
    root.mkdir()
    with h5py.File(root / "session.h5", "w") as f:
        f["acquisition/lfp"] = np.arange(50_000, dtype="f4")
    uri = _store_tree(cli, root, kenv)
    with h5py.File(fsspec.open(uri + "/session.h5", "rb").open(), "r") as f:
        assert f["acquisition/lfp"][49_999] == 49_999.0


def test_the_filesystem_lists_and_reads_a_tree(cli, kenv, tmp_path: Path) -> None:
    root = _tree(tmp_path / "rec")
    (root / "notes.txt").write_text("0123456789")
    uri = _store_tree(cli, root, kenv)
    fs = fsspec.filesystem("sha1dir")
    assert fs.ls(uri, detail=False) == [uri + "/sorting", uri + "/notes.txt"]
    assert fs.find(uri) == [uri + "/notes.txt", uri + "/sorting/units.csv"]
    assert [w[0] for w in fs.walk(uri)] == [uri, uri + "/sorting"]
    assert fs.glob(uri + "/*/*.csv") == [uri + "/sorting/units.csv"]
    assert fs.isdir(uri + "/sorting") and not fs.isdir(uri + "/notes.txt")
    assert fs.isfile(uri + "/notes.txt") and fs.exists(uri) and not fs.exists(uri + "/nope")
    info = fs.info(uri + "/notes.txt")
    assert info["size"] == 10 and info["type"] == "file" and len(info["sha1"]) == 40
    assert fs.cat_file(uri + "/notes.txt", 2, 5) == b"234"
    assert fs.cat_file(uri + "/notes.txt", -3) == b"789"
    file_uri = "sha1://" + info["sha1"] + "/notes.txt"
    with fsspec.open(file_uri, "rb") as f:  # a sha1:// URI opens as well
        f.seek(4)
        assert f.read(2) == b"45"


def test_writing_is_refused_with_the_way_to_store(cli, kenv, tmp_path: Path) -> None:
    uri = _store_tree(cli, _tree(tmp_path / "rec"), kenv)
    with pytest.raises(PermissionError) as caught:
        fsspec.open(uri + "/new.csv", "wb").open()
    message = str(caught.value)
    assert "read-only" in message and "kc.store_file / kc.store_dir" in message
    assert "\n" not in message
    with pytest.raises(PermissionError, match="read-only"):
        fsspec.filesystem("sha1dir").rm(uri + "/sorting/units.csv")


def test_readers_go_through_a_remote_node_named_in_storage_options(
    make_node, cli, kenv, tmp_path: Path
) -> None:
    pd = pytest.importorskip("pandas", reason="pandas has no release for this Python")
    h5py = pytest.importorskip("h5py", reason="h5py has no wheel for this Python")
    zarr = pytest.importorskip("zarr", reason="zarr has no release for this Python")
    node = make_node()
    root = _tree(tmp_path / "rec")
    _zarr_folder(root / "lfp.zarr")
    with h5py.File(root / "session.h5", "w") as f:
        f["acquisition/lfp"] = np.arange(1000, dtype="f4")
    uri = _store_tree(cli, root, dict(kenv, KACHERY_STORAGE_DIR=str(node.storage_dir)))
    made = cli(
        "token", "create", "--label", "fs", "--storage-dir", str(node.storage_dir),
        program="kachery-daemon",
    )  # fmt: skip
    cache = tmp_path / "laptop-cache"
    options = {
        "backend": "remote",
        "port": node.port,
        "token": made.stdout.strip(),
        "storage_dir": str(cache),
    }
    units = pd.read_csv(uri + "/sorting/units.csv", storage_options=options)
    assert list(units["rate"]) == [4.5, 0.5, 9.0]
    group = zarr.open_group(uri + "/lfp.zarr", mode="r", storage_options=options)
    assert int(group["x"][123]) == 123
    with h5py.File(fsspec.open(uri + "/session.h5", "rb", **options).open(), "r") as f:
        assert f["acquisition/lfp"][999] == 999.0
    assert any(cache.rglob("*"))  # the bytes came over the connection into the cache


def test_a_bad_storage_option_is_named(cli, kenv, tmp_path: Path) -> None:
    uri = _store_tree(cli, _tree(tmp_path / "rec"), kenv)
    from kachery_core.errors import ConfigError

    with pytest.raises(ConfigError, match="colour"):
        fsspec.open(uri + "/sorting/units.csv", "rb", colour="blue").open()


def test_a_profile_named_in_storage_options_chooses_the_node(
    make_node, cli, kenv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pd = pytest.importorskip("pandas", reason="pandas has no release for this Python")
    node = make_node()
    root = _tree(tmp_path / "rec")
    uri = _store_tree(cli, root, dict(kenv, KACHERY_STORAGE_DIR=str(node.storage_dir)))
    token = cli(
        "token", "create", "--label", "fs", "--storage-dir", str(node.storage_dir),
        program="kachery-daemon",
    ).stdout.strip()  # fmt: skip
    config = Path(kenv["KACHERY_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[profiles.lab]\n"
        'backend = "remote"\n'
        f"daemon_port = {node.port}\n"
        f'auth_token = "{token}"\n'
        f'storage_dir = "{tmp_path / "lab-cache"}"\n'
    )
    monkeypatch.delenv("KACHERY_DAEMON_PORT")  # the environment would win over the profile
    monkeypatch.delenv("KACHERY_STORAGE_DIR")
    units = pd.read_csv(uri + "/sorting/units.csv", storage_options={"profile": "lab"})
    assert list(units["unit"]) == [1, 2, 3]
    assert any((tmp_path / "lab-cache").rglob("*"))  # through the profile's node and cache


def test_the_readme_examples_run(kenv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked example of docs/lazy-reads.md, run as is in this process (the doc runner
    runs it as a script too)."""
    for name in ("pandas", "xarray", "zarr", "h5py"):
        pytest.importorskip(name, reason=f"{name} has no release for this Python")
    section = (Path(__file__).resolve().parents[2] / "docs" / "lazy-reads.md").read_text()
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert blocks, "the section has a python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "lazy-reads.md", "exec"), {})  # noqa: S102 - the documented example
