"""Names and pipes at the edges of the CLI's output, through the real `kachery-client`."""

from __future__ import annotations

import json
from pathlib import Path

# A right-to-left override, a line separator and a paragraph separator: each one is a
# legal file name character, and each would make `ls` show something else than it lists.
ODD_NAMES = ["evil\u202etxt.exe", "two\u2028lines", "para\u2029graph", "plain.txt"]


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
