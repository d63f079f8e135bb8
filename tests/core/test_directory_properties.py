"""Directory URIs and directory objects: property tests (hypothesis).

The bytes of a directory object and the text of a `sha1dir://` URI both come from
outside, so the properties are the safety ones: whatever the input, either it is refused
with the one error for it, or every hash is a hash and every name is a single path
component that cannot walk out of a folder. And writing is canonical: one tree, one URI.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kachery_core.content.directory import Directory, FileEntry, name_problem
from kachery_core.content.uri import DirUri, format_dir_uri, is_sha1, parse_any_uri, parse_dir_uri
from kachery_core.errors import IntegrityError, InvalidUriError

hashes = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=16,
).filter(lambda n: n not in (".", ".."))
"""Valid names: any text without separators or control characters (dots, %, unicode)."""
labels = st.one_of(
    names,
    st.text(alphabet=".%-_ab~é", min_size=1, max_size=12),  # dots and percent signs mostly
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"),
        min_size=1,
        max_size=16,
    ),
)
paths = st.lists(names, max_size=5).map(tuple)


def _assert_safe_name(name: object) -> None:
    assert isinstance(name, str)
    assert name_problem(name) is None
    assert name not in ("", ".", "..") and "/" not in name and "\\" not in name


# -- URIs ------------------------------------------------------------------------------


@given(hashes, st.one_of(st.none(), labels), paths)
def test_dir_uri_round_trip(sha1: str, label: Optional[str], path: Tuple[str, ...]) -> None:
    text = format_dir_uri(sha1, label, path)
    uri = parse_dir_uri(text)
    assert uri == DirUri(sha1, label, path)
    assert str(uri) == text
    assert parse_any_uri(text) == uri
    assert parse_dir_uri(str(uri.root())) == DirUri(sha1, label)
    if path:
        assert parse_dir_uri(str(uri.root().join(*path))) == uri


@given(hashes.map(str.upper), st.one_of(st.none(), labels), paths)
def test_dir_uri_hash_is_normalised(sha1: str, label: Optional[str], path: Tuple[str, ...]) -> None:
    uri = parse_dir_uri(format_dir_uri(sha1, label, path))
    assert uri.sha1 == sha1.lower()


@given(hashes, st.text(alphabet="ab.", min_size=1, max_size=10), paths)
def test_label_with_dots_keeps_every_dot(sha1: str, label: str, path: Tuple[str, ...]) -> None:
    """Only the first `.` after the hash separates it from the label."""
    raw = f"sha1dir://{sha1}.{label}" + "".join("/" + p for p in ("a", "b.c"))
    assert parse_dir_uri(raw) == DirUri(sha1, label, ("a", "b.c"))


def test_percent_encoded_and_unicode_names() -> None:
    sha1 = "fb52d510d2543634e247e0d2d1d4390be9ed9e20"
    uri = parse_dir_uri(f"sha1dir://{sha1}.my%20data.v2/s%C3%A9ance%201/a%25b.bin")
    assert uri == DirUri(sha1, "my data.v2", ("séance 1", "a%b.bin"))
    assert parse_dir_uri(str(uri)) == uri
    assert parse_dir_uri(f"sha1dir://{sha1}.x/séance 1/") == DirUri(sha1, "x", ("séance 1",))


_uri_like = st.one_of(
    st.text(max_size=120),
    st.builds(
        lambda h, tail: f"sha1dir://{h}{tail}",
        hashes,
        st.text(alphabet=string.printable + "%./\\é\x00", max_size=60),
    ),
    st.builds(
        lambda h, parts: f"sha1dir://{h}.l/" + "/".join(parts),
        hashes,
        st.lists(st.sampled_from(["a", ".", "..", "", "%2F", "%2e%2e", "%5C", "%00", "b%2Fc"])),
    ),
)


@given(_uri_like)
def test_arbitrary_text_never_yields_a_bad_hash_or_name(text: str) -> None:
    try:
        uri = parse_dir_uri(text)
    except InvalidUriError as exc:
        assert repr(text) in str(exc)  # the message quotes the input
        return
    assert is_sha1(uri.sha1) and uri.sha1 == uri.sha1.lower()
    for name in uri.path:
        _assert_safe_name(name)
    if uri.label is not None:
        assert uri.label and "/" not in uri.label
    assert parse_dir_uri(str(uri)) == uri  # what parses, prints back to the same URI


H = "fb52d510d2543634e247e0d2d1d4390be9ed9e20"
BAD_DIR_URIS = [
    "",
    "sha1dir://",
    f"sha1dir://{H[:-1]}",
    f"sha1dir://{H}0",
    f"sha1dir://{H}x.label",
    f"sha1://{H}",
    f"sha1dir://{H}.a%2Fb",
    f"sha1dir://{H}.l/../etc/passwd",
    f"sha1dir://{H}.l/a/../../b",
    f"sha1dir://{H}.l//etc/passwd",
    f"sha1dir://{H}.l/./x",
    f"sha1dir://{H}.l/a\\b",
    f"sha1dir://{H}.l/a%5Cb",
    f"sha1dir://{H}.l/a%00b",
    f"sha1dir://{H}.l/a%2F..%2F..%2Fb",
    f"sha1dir://{H}.l/%2e%2e/x",
    f"sha1dir://{H}.l/x\nname",
    f"sha1dir://{H}.la\tbel/x",
]


@pytest.mark.parametrize("text", BAD_DIR_URIS)
def test_malformed_dir_uris_are_refused_quoting_the_input(text: str) -> None:
    with pytest.raises(InvalidUriError) as info:
        parse_dir_uri(text)
    assert repr(text) in str(info.value)


def test_format_refuses_what_parse_refuses() -> None:
    """A URI is never printed that would not parse back to the same tree and path."""
    for label, path in [("a/b", ()), ("ok", ("a/b",)), ("ok", ("..",)), ("ok", ("",))]:
        with pytest.raises(InvalidUriError):
            format_dir_uri(H, label, path)


# -- directory objects -----------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | hashes,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.one_of(
                st.sampled_from(["files", "dirs", "size", "sha1", "manifestSha1", "..", ".", ""]),
                st.text(max_size=8),
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=30,
)


def _entry_like() -> Any:
    return st.fixed_dictionaries(
        {},
        optional={
            "size": st.one_of(st.integers(min_value=-3, max_value=10**12), json_values),
            "sha1": st.one_of(hashes, hashes.map(str.upper), json_values),
            "manifestSha1": st.one_of(hashes, json_values),
            "extra": json_values,
        },
    )


hostile_names = st.one_of(
    names,
    st.sampled_from(["", ".", "..", "a/b", "../x", "a\\b", "x\x00y", "\udc80", "ok.txt"]),
)
directory_like = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={"files": st.dictionaries(hostile_names, _entry_like(), max_size=3)},
    ),
    lambda children: st.fixed_dictionaries(
        {},
        optional={
            "files": st.one_of(st.dictionaries(hostile_names, _entry_like(), max_size=3)),
            "dirs": st.one_of(st.dictionaries(hostile_names, children, max_size=3), json_values),
            "other": json_values,
        },
    ),
    max_leaves=12,
)


def _check_parsed(directory: Directory) -> None:
    for path, entry in directory.walk():
        for name in path:
            _assert_safe_name(name)
        assert isinstance(entry.size, int) and not isinstance(entry.size, bool)
        assert entry.size >= 0
        assert entry.sha1 is None or (is_sha1(entry.sha1) and entry.sha1 == entry.sha1.lower())
        assert entry.manifest_sha1 is None or is_sha1(entry.manifest_sha1)
    for path in directory.walk_dirs():
        for name in path:
            _assert_safe_name(name)
    # what was read is written canonically, and reads back to the same bytes
    data = directory.to_bytes()
    assert Directory.from_bytes(data, "again").to_bytes() == data


def _parse_or_refuse(data: bytes) -> Optional[Directory]:
    try:
        directory = Directory.from_bytes(data, "sha1dir://x")
    except IntegrityError as exc:
        assert "sha1dir://x" in str(exc) and "\n" not in str(exc)
        return None
    _check_parsed(directory)
    return directory


@given(json_values)
def test_arbitrary_json_parses_or_is_an_integrity_error(value: Any) -> None:
    _parse_or_refuse(json.dumps(value).encode())


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(directory_like, st.booleans())
def test_directory_shaped_json_parses_or_is_an_integrity_error(value: Any, pretty: bool) -> None:
    text = json.dumps(value, indent=1 if pretty else None, ensure_ascii=True)
    _parse_or_refuse(text.encode())


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_are_an_integrity_error(data: bytes) -> None:
    _parse_or_refuse(data)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    for depth in (300, 5000, 200_000):
        text = '{"dirs": {"d": ' * depth + "{}" + "}}" * depth
        assert _parse_or_refuse(text.encode()) is None
    assert _parse_or_refuse(("[" * 200_000).encode()) is None


def test_escaping_names_are_refused() -> None:
    sha1 = "0" * 40
    for name in ["..", ".", "", "a/b", "../../etc/passwd", "a\\b", "\\..", "x\x00", "\x7f"]:
        for doc in (
            {"files": {name: {"size": 1, "sha1": sha1}}},
            {"dirs": {name: {}}},
            {"dirs": {"ok": {"dirs": {name: {"files": {}}}}}},
        ):
            assert _parse_or_refuse(json.dumps(doc).encode()) is None, (name, doc)
    assert _parse_or_refuse(b'{"files": {"\\ud800": {"size": 1}}}') is None  # lone surrogate


# -- canonical writing -----------------------------------------------------------------

file_entries = st.builds(
    FileEntry,
    st.integers(min_value=0, max_value=10**12),
    st.one_of(st.none(), hashes),
    st.one_of(st.none(), hashes),
)
trees: Any = st.recursive(
    st.builds(
        lambda files: Directory(files=files), st.dictionaries(names, file_entries, max_size=4)
    ),
    lambda children: st.builds(
        lambda files, dirs: Directory(
            files=files, dirs={k: v for k, v in dirs.items() if k not in files}
        ),
        st.dictionaries(names, file_entries, max_size=4),
        st.dictionaries(names, children, max_size=3),
    ),
    max_leaves=20,
)


@given(trees)
def test_canonical_round_trip(tree: Directory) -> None:
    data = tree.to_bytes()
    back = Directory.from_bytes(data, "t")
    assert back.to_bytes() == data
    assert back == tree
    text = data.decode("utf-8")
    assert json.loads(text) == tree.to_json()
    assert data == json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _items(tree: Directory) -> List[Tuple[Tuple[str, ...], Optional[FileEntry]]]:
    """Every file (with its entry) and every directory (None), by path."""
    out: List[Tuple[Tuple[str, ...], Optional[FileEntry]]] = list(tree.walk())
    out.extend((path, None) for path in tree.walk_dirs())
    return out


def _build(items: List[Tuple[Tuple[str, ...], Optional[FileEntry]]]) -> Directory:
    built = Directory()
    for path, entry in items:
        if entry is None:
            built.subdir(path)
        else:
            built.add_file(path, entry)
    return built


@given(trees, st.randoms(use_true_random=False))
def test_insertion_order_does_not_change_the_bytes(tree: Directory, rnd: random.Random) -> None:
    items = _items(tree)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    backwards = list(reversed(items))
    assert _build(shuffled).to_bytes() == tree.to_bytes()
    assert _build(backwards).to_bytes() == tree.to_bytes()


def test_earlier_writers_format_reads_to_the_same_tree() -> None:
    """Default separators, listing order, unknown keys: the same tree, canonical bytes."""
    sha1 = "a" * 40
    doc: Dict[str, Any] = {
        "files": {"z.txt": {"size": 3, "sha1": sha1, "mtime": 1.5}, "a.txt": {"size": 0}},
        "dirs": {"sub": {"files": {}, "dirs": {}, "unknown": [1, 2]}},
        "extra": "ignored",
    }
    tree = Directory.from_bytes(json.dumps(doc).encode(), "old")
    assert tree.files["a.txt"] == FileEntry(0, None)
    assert tree.to_bytes() == (
        b'{"dirs":{"sub":{"dirs":{},"files":{}}},"files":{"a.txt":{"size":0},'
        b'"z.txt":{"sha1":"' + sha1.encode() + b'","size":3}}}'
    )


@pytest.mark.parametrize("name", ["a\u009b2J", "\u0085", "x\x7fy", "tab\there"])
def test_names_with_control_characters_are_refused(name: str) -> None:
    """C0, DEL and C1 controls (U+009B starts a terminal escape) never reach `ls` output."""
    doc = {"files": {name: {"size": 1, "sha1": "a" * 40}}, "dirs": {}}
    with pytest.raises(IntegrityError, match="control characters"):
        Directory.from_bytes(json.dumps(doc).encode(), "sha1dir://" + "b" * 40)
