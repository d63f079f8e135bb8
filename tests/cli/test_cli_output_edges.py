"""Names and pipes at the edges of the CLI's output, through the real `kachery-client`:
names that would reorder or split a line of `ls`, file names that are not UTF-8, and a
reader that closes the pipe early."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import command

import kachery_client as kc
from kachery_core.errors import InvalidInputError

# A right-to-left override, a line separator and a paragraph separator: each one is a
# legal file name character, and each would make `ls` show something else than it lists.
ODD_NAMES = ["evil\u202etxt.exe", "two\u2028lines", "para\u2029graph", "plain.txt"]


def _objects(storage_dir: Path) -> List[str]:
    return sorted(p.name for p in (storage_dir / "sha1").rglob("*") if p.is_file())


def test_ls_escapes_bidi_controls_and_line_separators(cli, tmp_path: Path) -> None:
    """SECURITY.md: names are shown escaped in human output; JSON output stays exact."""
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ODD_NAMES:
        (folder / name).write_bytes(name.encode("utf-8"))
    stored = cli("store-file", "-r", str(folder))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()

    shown = cli("ls", uri)
    assert shown.returncode == 0, shown
    lines = shown.stdout.splitlines()  # splits on U+2028/U+2029 too
    assert len(lines) == len(ODD_NAMES), lines
    for raw in ("\u202e", "\u2028", "\u2029"):
        assert raw not in shown.stdout
    names = sorted(line.split("  ")[0].rstrip() for line in lines)
    assert names == sorted(
        ["evil\\u202etxt.exe", "two\\u2028lines", "para\\u2029graph", "plain.txt"]
    )

    as_json = cli("ls", "--json", uri)
    assert sorted(e["name"] for e in json.loads(as_json.stdout)) == sorted(ODD_NAMES)


@pytest.fixture
def not_utf8(tmp_path: Path) -> str:
    """A file whose name is the byte 0xFF then `.bin` (not UTF-8), as the CLI receives it."""
    path = os.path.join(os.fsencode(tmp_path), b"\xff.bin")
    with open(path, "wb") as f:
        f.write(b"bytes under a name that is not text")
    return os.fsdecode(path)


def test_store_file_refuses_a_name_that_is_not_utf8(
    cli, kenv: Dict[str, str], tmp_path: Path, not_utf8: str
) -> None:
    """The URI's name is text: a file name that is not UTF-8 is refused before anything is
    stored, in one line saying to name it with --label."""
    storage_dir = Path(kenv["KACHERY_STORAGE_DIR"])
    other = tmp_path / "fine.txt"
    other.write_text("stored only if every name is good")
    for args in ([not_utf8], [str(other), not_utf8], ["link-file", not_utf8]):
        args = args if args[0] == "link-file" else ["store-file", *args]
        refused = cli(*args)
        assert refused.returncode == 1, refused
        assert refused.stderr.count("\n") == 1, refused
        assert refused.stderr.startswith("Error: the file name b'\\xff.bin' is not UTF-8")
        assert "--label" in refused.stderr and "a bug" not in refused.stderr
    assert not storage_dir.exists() or _objects(storage_dir) == []

    labelled = cli("store-file", not_utf8, "--label", "named.bin")
    assert labelled.returncode == 0, labelled
    uri = labelled.stdout.strip()
    assert uri.endswith("/named.bin")
    assert cli("cat-file", uri).stdout_bytes == b"bytes under a name that is not text"


def test_a_folder_whose_name_is_not_utf8_is_stored_without_a_label(cli, tmp_path: Path) -> None:
    """As for a folder name with control characters: the tree is stored, the URI unlabelled."""
    folder = os.path.join(os.fsencode(tmp_path), b"\xffdir")
    os.mkdir(folder)
    with open(os.path.join(folder, b"a.txt"), "wb") as f:
        f.write(b"inside")
    stored = cli("store-file", "-r", os.fsdecode(folder))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    assert uri.startswith("sha1dir://") and len(uri) == len("sha1dir://") + 40, uri
    assert cli("cat-file", uri + "/a.txt").stdout_bytes == b"inside"


def test_python_api_refuses_a_name_that_is_not_utf8(kenv: Dict[str, str], not_utf8: str) -> None:
    client = kc.Client(storage_dir=kenv["KACHERY_STORAGE_DIR"])
    with pytest.raises(InvalidInputError, match="is not UTF-8"):
        client.store_file(not_utf8)
    assert client.store_file(not_utf8, "named.bin").endswith("/named.bin")


@pytest.mark.parametrize("program", ["kachery-client", "kachery-cat"])
def test_cat_file_into_a_pipe_closed_early_exits_0(
    cli, kenv: Dict[str, str], tmp_path: Path, program: str
) -> None:
    """`cat-file BIG | head -c 10`: the reader going away is not an error (exit 0, silent)."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20))  # over the 4 MiB read whole before writing
    uri = cli("store-file", str(big)).stdout.strip()
    args = ["cat-file", uri] if program == "kachery-client" else [uri]
    proc = subprocess.Popen(
        [command(program), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(kenv),
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(10) == big.read_bytes()[:10]
        proc.stdout.close()  # as `head -c 10` does
        code = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (code, stderr) == (0, "")
