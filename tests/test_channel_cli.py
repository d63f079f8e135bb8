"""Channels from the client's side: names checked before any work, the URI of a stored file
printed even when its upload fails, a lost node named as such, and `kachery-client upload`.

Real `kachery-client` subprocesses against real nodes; the channel itself is a real
SeaweedFS S3 store on loopback (tests/seaweed.py), one for the module.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import sha1_file

import kachery_client as kc
from kachery_core.layout import StorageLayout

BAD = "Bad Name!"


def _error_lines(stderr: str) -> List[str]:
    lines = stderr.strip().splitlines()
    # (Python 3.8 adds a CryptographyDeprecationWarning, two lines, before everything)
    if len(lines) == 3 and "Warning: " in lines[0]:
        lines = lines[2:]
    return lines


def _one_error(result: Any, code: int = 1) -> str:
    assert result.returncode == code, result
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _nothing_stored(storage_dir: Path) -> bool:
    return not (storage_dir / "sha1").exists() or not any((storage_dir / "sha1").rglob("*"))


# -- channel names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["load-file", "sha1://" + "0" * 40, "--channel", BAD],
        ["cat-file", "sha1://" + "0" * 40, "--channel", BAD],
        ["store-file", "FILE", "--upload-to-channel", BAD],
        ["store-file", "-", "--upload-to-channel", BAD],
    ],
)
def test_a_bad_channel_name_is_a_usage_error(
    cli: Any, kenv: Dict[str, str], tmp_path: Path, args: List[str]
) -> None:
    src = tmp_path / "x.txt"
    src.write_text("never stored")
    args = [str(src) if a == "FILE" else a for a in args]
    result = cli(*args, input=b"never stored either")
    error = _one_error(result, 2)
    assert repr(BAD) in error and "channel name" in error, error
    assert result.stdout == ""
    assert _nothing_stored(Path(kenv["KACHERY_STORAGE_DIR"]))


def test_a_bad_channel_name_in_the_python_api(kenv: Dict[str, str], tmp_path: Path) -> None:
    for make in (
        lambda: kc.Client(channel=BAD),
        lambda: kc.Client().store_file(tmp_path / "y.txt", upload_to_channel=BAD),
        lambda: kc.Client().store_stream(io.BytesIO(b"never stored"), upload_to_channel=BAD),
        lambda: kc.Client().upload_to_channel("sha1://" + "0" * 40, BAD),
    ):
        (tmp_path / "y.txt").write_text("never stored")
        with pytest.raises(kc.InvalidInputError) as caught:
            make()
        assert isinstance(caught.value, ValueError)
        assert repr(BAD) in str(caught.value)
    assert _nothing_stored(Path(kenv["KACHERY_STORAGE_DIR"]))
    assert kc.Client(channel=" lab ").config.channel == "lab"


def test_failed_upload_still_prints_the_uri(cli: Any, node: Any, tmp_path: Path) -> None:
    src = tmp_path / "kept.txt"
    src.write_text("stored, though the upload fails")
    for args in ([str(src)], ["-"]):
        result = cli("store-file", *args, "--upload-to-channel", "lab", input=src.read_bytes())
        error = _one_error(result)
        assert "belongs to no channel" in error, error
        uri = result.stdout.strip()
        assert re.fullmatch(r"sha1://[0-9a-f]{40}(/kept\.txt)?", uri), result.stdout
        assert uri.split("/")[2] == sha1_file(src)
        assert StorageLayout(node.storage_dir).object_path(sha1_file(src)).exists()
