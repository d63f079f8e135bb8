"""URI parsing: property tests (hypothesis) and the protocol's fixed facts."""

from __future__ import annotations

import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kachery_core.content.uri import ChunkOf, ContentUri, format_uri, is_sha1, parse_uri
from kachery_core.errors import InvalidUriError

hashes = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
label_parts = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=20,
).filter(lambda p: p not in (".", ".."))
labels = st.lists(label_parts, min_size=1, max_size=4).map("/".join)


def test_protocol_example() -> None:
    data = b"Hello, world!"
    assert len(data) == 13
    sha1 = hashlib.sha1(data).hexdigest()
    assert f"sha1://{sha1}" == "sha1://943a702d06f34599aee1f8da8ef9f7296031d699"
    assert parse_uri(f"sha1://{sha1}").sha1 == sha1


@given(hashes, st.one_of(st.none(), labels), st.one_of(st.none(), hashes))
def test_format_parse_round_trip(sha1: str, label: str | None, manifest: str | None) -> None:
    text = format_uri(sha1, label, manifest)
    uri = parse_uri(text)
    assert uri == ContentUri(sha1, label, manifest)
    assert str(uri) == text


@given(hashes, hashes, st.integers(0, 10**12), st.integers(0, 10**12))
def test_chunk_of_round_trip(sha1: str, whole: str, a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    text = f"sha1://{sha1}?chunkOf={whole}~{start}~{end}"
    uri = parse_uri(text)
    assert uri.chunk_of == ChunkOf(whole, start, end)
    assert parse_uri(str(uri)) == uri


@given(
    hashes, st.text(alphabet=string.ascii_letters, min_size=1, max_size=10), st.text(max_size=20)
)
def test_unknown_query_keys_are_ignored(sha1: str, key: str, value: str) -> None:
    if key in ("manifest", "chunkOf"):
        return
    value = value.replace("&", "").replace("#", "")
    assert parse_uri(f"sha1://{sha1}/f.txt?{key}={value}") == ContentUri(sha1, "f.txt")


@given(st.text(max_size=120))
def test_arbitrary_text_never_yields_a_bad_hash(text: str) -> None:
    try:
        uri = parse_uri(text)
    except InvalidUriError as exc:
        assert repr(text) in str(exc)  # the message quotes the input
        return
    assert is_sha1(uri.sha1) and uri.sha1 == uri.sha1.lower()
    if uri.label is not None:
        parts = uri.label.split("/")
        assert ".." not in parts and "" not in parts and "." not in parts


@given(hashes.map(str.upper))
def test_uppercase_hashes_are_normalised(sha1: str) -> None:
    assert parse_uri(f"sha1://{sha1}").sha1 == sha1.lower()


H = "943a702d06f34599aee1f8da8ef9f7296031d699"
BAD = [
    "",
    "943a702d06f34599aee1f8da8ef9f7296031d699",
    "http://example.org/x",
    "sha256://" + H,
    "sha1://" + H[:-1],
    "sha1://" + H + "0",
    "sha1://" + H[:-1] + "g",
    "sha1://../../etc/passwd",
    f"sha1://{H}/../etc/passwd",
    f"sha1://{H}/a/../../b",
    f"sha1://{H}//etc/passwd",
    f"sha1://{H}/./x",
    f"sha1://{H}/a\\b",
    f"sha1://{H}/a%00b",
    f"sha1://{H}/a%2F..%2Fb",
    f"sha1://{H}/x\nname",
    f"sha1://{H}?manifest=abc",
    f"sha1://{H}?chunkOf={H}~5~2",
    f"sha1://{H}?chunkOf={H}~a~2",
    f"sha1://{H}?chunkOf={H}",
]


@pytest.mark.parametrize("text", BAD)
def test_malformed_uris_are_refused_quoting_the_input(text: str) -> None:
    with pytest.raises(InvalidUriError) as info:
        parse_uri(text)
    assert repr(text) in str(info.value)


def test_label_may_hold_slashes_and_unicode() -> None:
    uri = parse_uri(f"sha1://{H}/recordings/séance 1.bin")
    assert uri.label == "recordings/séance 1.bin"
    assert parse_uri(str(uri)) == uri
