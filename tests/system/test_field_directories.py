"""Directory objects as the earlier kachery versions wrote them, read through the CLI.

Those writers used `json.dumps(obj)` with the default separators (", " and ": "), keys in
the order the folder listing gave them (not sorted: "files" before "dirs", names
unsorted), extra keys of their own, and sometimes entries without a "sha1". Such objects
are in the field, named by `sha1dir://<hash>.<label>` URIs in papers and notebooks, so
they must list and load as they are. Real CLI processes, embedded backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Dict

import pytest

from kachery_core.store.layout import StorageLayout

FILES = {
    "params.json": b'{"samplerate": 30000}',
    "README": b"recorded on the rig\n",
    "raw/b.bin": os.urandom(3000),
    "raw/a.bin": os.urandom(1000),
    "raw/deep/x.txt": b"deep",
}
NO_HASH_SIZE = 5


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _old_object(with_unhashed: bool) -> Dict[str, Any]:
    """The tree as the earlier writers listed it: listing order, extra keys."""

    def entry(rel: str, **extra: Any) -> Dict[str, Any]:
        return {"size": len(FILES[rel]), "sha1": _sha1(FILES[rel]), **extra}

    files: Dict[str, Any] = {
        "params.json": entry("params.json", mtime=1589000000.25),
        "README": entry("README"),
    }
    if with_unhashed:
        files["nohash.dat"] = {"size": NO_HASH_SIZE}
    return {
        "files": files,
        "dirs": {
            "raw": {
                "files": {
                    "b.bin": entry("raw/b.bin", content_type="bin"),
                    "a.bin": entry("raw/a.bin"),
                },
                "dirs": {"deep": {"files": {"x.txt": entry("raw/deep/x.txt")}, "dirs": {}}},
                "writer": "kachery 0.6",
            },
            "empty": {"files": {}, "dirs": {}},
        },
    }


@pytest.fixture
def old_tree(cli, tmp_path: Path) -> Dict[str, str]:
    """The files stored one by one, then the old-format object stored as a plain file."""
    src = tmp_path / "src"
    for rel, data in FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    stored = cli("store-file", *[str(src / rel) for rel in FILES])
    assert stored.returncode == 0, stored
    uris: Dict[str, str] = {}
    for with_unhashed, name in ((True, "full"), (False, "hashed")):
        text = json.dumps(_old_object(with_unhashed))
        assert '"files": {"params.json": {"size": ' in text  # the old shape, not canonical
        obj = tmp_path / f"{name}.json"
        obj.write_text(text)
        result = cli("store-file", str(obj))
        assert result.returncode == 0, result
        sha1 = result.stdout.strip()[len("sha1://") :].split("/")[0]
        assert sha1 == _sha1(text.encode())
        uris[name] = f"sha1dir://{sha1}.olddata"
    return uris


def test_old_object_loads_files_by_path(cli, old_tree: Dict[str, str]) -> None:
    for rel, data in FILES.items():
        loaded = cli("load-file", f"{old_tree['full']}/{rel}")
        assert loaded.returncode == 0, loaded
        assert Path(loaded.stdout.strip()).read_bytes() == data
        assert cli("cat-file", f"{old_tree['full']}/{rel}").stdout_bytes == data
    part = cli("cat-file", f"{old_tree['full']}/raw/b.bin", "--start", "10", "--end", "20")
    assert part.stdout_bytes == FILES["raw/b.bin"][10:20]


def test_old_object_lists(cli, old_tree: Dict[str, str]) -> None:
    uri = old_tree["full"]
    h = {rel: _sha1(data) for rel, data in FILES.items()}
    listing = cli("ls", uri)
    assert listing.returncode == 0, listing
    assert listing.stderr == ""
    assert listing.stdout == (
        f"README         20  sha1://{h['README']}/README\n"
        f"empty/          0  {uri}/empty\n"
        f"nohash.dat      5  (no sha1: cannot be loaded)\n"
        f"params.json    21  sha1://{h['params.json']}/params.json\n"
        f"raw/         4004  {uri}/raw\n"
    )
    recursive = cli("ls", "-r", uri)
    assert recursive.stdout == (
        f"README            20  sha1://{h['README']}/README\n"
        f"empty/             0  {uri}/empty\n"
        f"nohash.dat         5  (no sha1: cannot be loaded)\n"
        f"params.json       21  sha1://{h['params.json']}/params.json\n"
        f"raw/            4004  {uri}/raw\n"
        f"raw/a.bin       1000  sha1://{h['raw/a.bin']}/a.bin\n"
        f"raw/b.bin       3000  sha1://{h['raw/b.bin']}/b.bin\n"
        f"raw/deep/          4  {uri}/raw/deep\n"
        f"raw/deep/x.txt     4  sha1://{h['raw/deep/x.txt']}/x.txt\n"
    )
    as_json = json.loads(cli("ls", "--json", f"{uri}/raw").stdout)
    assert as_json == [
        {"name": "a.bin", "type": "file", "size": 1000, "uri": f"sha1://{h['raw/a.bin']}/a.bin"},
        {"name": "b.bin", "type": "file", "size": 3000, "uri": f"sha1://{h['raw/b.bin']}/b.bin"},
        {"name": "deep/", "type": "dir", "size": 4, "uri": f"{uri}/raw/deep"},
    ]
    one = json.loads(cli("ls", "--json", f"{uri}/raw/deep/x.txt").stdout)
    assert one == [
        {"name": "x.txt", "type": "file", "size": 4, "uri": f"sha1://{h['raw/deep/x.txt']}/x.txt"}
    ]


def test_old_object_materializes(cli, kenv, old_tree: Dict[str, str], tmp_path: Path) -> None:
    dest = tmp_path / "out"
    result = cli("load-file", "-r", old_tree["hashed"], "--dest", str(dest))
    assert result.returncode == 0, result
    assert result.stdout.strip() == str(dest)
    found = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert found == FILES
    assert (dest / "empty").is_dir() and not any((dest / "empty").iterdir())
    sub = tmp_path / "raw-only"
    result = cli("load-file", "-r", f"{old_tree['full']}/raw", "--dest", str(sub))
    assert result.returncode == 0, result
    assert sorted(str(p.relative_to(sub)) for p in sub.rglob("*")) == [
        "a.bin",
        "b.bin",
        "deep",
        "deep/x.txt",
    ]


def test_entry_without_sha1_is_listed_but_refused_on_load(
    cli, old_tree: Dict[str, str], tmp_path: Path
) -> None:
    uri = f"{old_tree['full']}/nohash.dat"
    for args in (("load-file", uri), ("cat-file", uri)):
        result = cli(*args)
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1
        assert "'nohash.dat' has no sha1" in result.stderr
        assert "store the folder again" in result.stderr
    out = tmp_path / "out"
    out.mkdir()
    result = cli("load-file", "-r", old_tree["full"], "--dest", str(out / "whole"))
    assert result.returncode == 1, result
    assert "'nohash.dat' has no sha1" in result.stderr
    assert os.listdir(out) == []  # no folder, no staging folder
    # with --force into a folder with something in it: refused before a folder is made
    busy = out / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = cli("load-file", "-r", old_tree["full"], "--dest", str(busy), "--force")
    assert result.returncode == 1, result
    assert os.listdir(busy) == ["keep.txt"]


def test_spikeforest_shaped_uri(cli, kenv, tmp_path: Path) -> None:
    """`sha1dir://<hash>.synth_magland/datasets_noise10_K10_C4/001_synth`, built here."""
    study = tmp_path / "synth_magland"
    recording = study / "datasets_noise10_K10_C4" / "001_synth"
    recording.mkdir(parents=True)
    contents = {
        "raw.mda": os.urandom(40_000),
        "params.json": b'{"samplerate": 30000, "spike_sign": -1}',
        "geom.csv": b"0,0\n0,25\n0,50\n0,75\n",
        "firings_true.mda": os.urandom(1200),
    }
    for name, data in contents.items():
        (recording / name).write_bytes(data)
    (study / "datasets_noise10_K10_C4" / "002_synth").mkdir()
    (study / "datasets_noise10_K10_C4" / "002_synth" / "raw.mda").write_bytes(b"other")
    stored = cli("store-file", "-r", str(study))
    assert stored.returncode == 0, stored
    root = stored.stdout.strip()
    assert root.startswith("sha1dir://") and root.endswith(".synth_magland")
    uri = f"{root}/datasets_noise10_K10_C4/001_synth"
    listing = cli("ls", "--json", uri)
    assert listing.returncode == 0, listing
    assert [(e["name"], e["size"]) for e in json.loads(listing.stdout)] == sorted(
        (name, len(data)) for name, data in contents.items()
    )
    params = cli("load-file", f"{uri}/params.json")
    assert Path(params.stdout.strip()).read_bytes() == contents["params.json"]
    assert cli("cat-file", f"{uri}/geom.csv").stdout_bytes == contents["geom.csv"]
    dest = tmp_path / "001_synth"
    result = cli("load-file", "-r", uri, "--dest", str(dest))
    assert result.returncode == 0, result
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == contents
    objects = StorageLayout(Path(kenv["KACHERY_STORAGE_DIR"])).object_path(
        _sha1(contents["raw.mda"])
    )
    assert os.stat(dest / "raw.mda").st_ino == os.stat(objects).st_ino  # a hard link
    assert not stat.S_IMODE(os.stat(dest / "raw.mda").st_mode) & 0o222
