"""Content URIs: `sha1://<hash>[/<label>][?manifest=<hash>&chunkOf=<hash>~<start>~<end>]`,
and directory URIs: `sha1dir://<hash>[.<label>][/<path inside>]`.

This is the one parser of URIs in kachery. A URI names bytes by their SHA-1; the label
is informational and is never used as a filesystem path. Anything malformed is refused
with an `InvalidUriError` that quotes the input.

    >>> uri = parse_uri("sha1://943a702d06f34599aee1f8da8ef9f7296031d699/hello.txt")
    >>> uri.sha1, uri.label
    ('943a702d06f34599aee1f8da8ef9f7296031d699', 'hello.txt')
    >>> str(uri)
    'sha1://943a702d06f34599aee1f8da8ef9f7296031d699/hello.txt'
    >>> parse_any_uri("sha1dir://fb52d510d2543634e247e0d2d1d4390be9ed9e20.synth/a/b.bin").path
    ('a', 'b.bin')
"""

from __future__ import annotations

import re
from typing import Optional, Tuple, Union
from urllib.parse import quote, unquote

from kachery_core.errors import InvalidUriError
from kachery_core.records import dataclass

SCHEME = "sha1://"
DIR_SCHEME = "sha1dir://"
_SHA1_RE = re.compile(r"[0-9a-fA-F]{40}")
_DIGITS_RE = re.compile(r"[0-9]+")
_LABEL_SAFE = "/~!$&'()*+,;=:@-._"


def is_sha1(text: object) -> bool:
    """True for exactly 40 hex digits (either case)."""
    return isinstance(text, str) and _SHA1_RE.fullmatch(text) is not None


def check_sha1(text: object, what: str = "hash") -> str:
    """Return `text` as a lowercase SHA-1 hex string, or raise naming the bad value."""
    if not is_sha1(text):
        raise InvalidUriError(
            f"invalid {what} {text!r}", "a SHA-1 hash is exactly 40 hexadecimal digits"
        )
    assert isinstance(text, str)
    return text.lower()


@dataclass(frozen=True)
class ChunkOf:
    """This object is bytes [start, end) of the file whose hash is `sha1`."""

    sha1: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.sha1}~{self.start}~{self.end}"


@dataclass(frozen=True)
class ContentUri:
    """A parsed `sha1://` URI. Build one with `parse_uri` or `ContentUri.for_hash`."""

    sha1: str
    label: Optional[str] = None
    manifest_sha1: Optional[str] = None
    chunk_of: Optional[ChunkOf] = None

    @classmethod
    def for_hash(
        cls, sha1: str, label: Optional[str] = None, manifest_sha1: Optional[str] = None
    ) -> ContentUri:
        """Build a URI from a hash, checking every part as `parse_uri` would."""
        return parse_uri(format_uri(sha1, label, manifest_sha1))

    def __str__(self) -> str:
        return format_uri(self.sha1, self.label, self.manifest_sha1, self.chunk_of)


def format_uri(
    sha1: str,
    label: Optional[str] = None,
    manifest_sha1: Optional[str] = None,
    chunk_of: Optional[ChunkOf] = None,
) -> str:
    """The canonical text of a URI (label percent-encoded where needed)."""
    text = SCHEME + check_sha1(sha1)
    if label:
        text += "/" + quote(label, safe=_LABEL_SAFE)
    query = []
    if manifest_sha1:
        query.append("manifest=" + check_sha1(manifest_sha1, "manifest hash"))
    if chunk_of:
        query.append(f"chunkOf={chunk_of}")
    if query:
        text += "?" + "&".join(query)
    return text


def parse_uri(text: object) -> ContentUri:
    """Parse and validate a `sha1://` URI; raise `InvalidUriError` quoting `text` if bad."""
    if not isinstance(text, str):
        raise InvalidUriError(f"invalid URI {text!r}", "expected text like sha1://<40 hex>")
    if not text.startswith(SCHEME):
        hint = "expected sha1://<40 hex digits>[/<name>]"
        if "://" not in text:
            hint += " (to store a local file, use store-file)"
        elif text.startswith(DIR_SCHEME):
            hint = "name a file inside the directory: sha1dir://<hash>.<label>/<path>"
        raise InvalidUriError(f"invalid URI {text!r}: not a sha1:// URI", hint)
    rest = text[len(SCHEME) :]
    rest, _, query = rest.partition("?")
    query, _, _fragment = query.partition("#")
    sha1, slash, label_text = rest.partition("/")
    if not is_sha1(sha1):
        raise InvalidUriError(
            f"invalid URI {text!r}: {sha1!r} is not a SHA-1 hash",
            "the part after sha1:// must be exactly 40 hexadecimal digits",
        )
    label = _parse_label(text, label_text) if slash else None
    manifest_sha1: Optional[str] = None
    chunk_of: Optional[ChunkOf] = None
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        if key == "manifest":
            manifest_sha1 = _query_sha1(text, value, "manifest")
        elif key == "chunkOf":
            chunk_of = _parse_chunk_of(text, value)
        # Unknown keys are ignored, as the protocol says.
    return ContentUri(sha1.lower(), label, manifest_sha1, chunk_of)


def _parse_label(text: str, raw: str) -> Optional[str]:
    label = unquote(raw)
    if not label:
        return None
    bad = _has_control(label)
    parts = label.split("/")
    if bad or any(p in ("", ".", "..") for p in parts) or "\\" in label:
        raise InvalidUriError(
            f"invalid URI {text!r}: bad file name {label!r} after the hash",
            "the name may not be empty, contain '..', '.', '\\', empty parts or control characters",
        )
    return label


def _query_sha1(text: str, value: str, key: str) -> str:
    if not is_sha1(value):
        raise InvalidUriError(
            f"invalid URI {text!r}: {key}={value!r} is not a SHA-1 hash",
            f"{key}= takes exactly 40 hexadecimal digits",
        )
    return value.lower()


def _parse_chunk_of(text: str, value: str) -> ChunkOf:
    parts = value.split("~")
    if (
        len(parts) == 3
        and is_sha1(parts[0])
        and _DIGITS_RE.fullmatch(parts[1])
        and _DIGITS_RE.fullmatch(parts[2])
    ):
        start, end = int(parts[1]), int(parts[2])
        if start <= end:
            return ChunkOf(parts[0].lower(), start, end)
    raise InvalidUriError(
        f"invalid URI {text!r}: chunkOf={value!r} is malformed",
        "expected chunkOf=<sha1>~<start>~<end> with start <= end",
    )


@dataclass(frozen=True)
class DirUri:
    """A parsed `sha1dir://` URI: a directory object, and a path of names inside it.

    `path` is empty for the directory itself. The label is free text without `/` (it may
    contain dots: only the first `.` after the hash separates the two).
    """

    sha1: str
    label: Optional[str] = None
    path: Tuple[str, ...] = ()

    def __str__(self) -> str:
        return format_dir_uri(self.sha1, self.label, self.path)

    def root(self) -> DirUri:
        """The directory object's own URI (no path)."""
        return DirUri(self.sha1, self.label)

    def join(self, *names: str) -> DirUri:
        """The URI of an entry below this one."""
        return DirUri(self.sha1, self.label, self.path + tuple(names))


def format_dir_uri(sha1: str, label: Optional[str] = None, path: Tuple[str, ...] = ()) -> str:
    """The canonical text of a directory URI (label and names percent-encoded where needed).

    A label or name that `parse_dir_uri` would refuse is refused here too, so no URI is
    printed that does not parse back to the same tree and path.
    """
    text = DIR_SCHEME + check_sha1(sha1)
    if label:
        text += "." + quote(check_dir_label(label), safe=_LABEL_SAFE.replace("/", ""))
    for name in path:
        if name in ("", ".", "..") or "/" in name or "\\" in name or _has_control(name):
            raise InvalidUriError(
                f"invalid name {name!r} in a sha1dir:// path",
                "a name may not be empty, '.', '..', or contain '/', '\\' or control characters",
            )
        text += "/" + quote(name, safe=_LABEL_SAFE.replace("/", ""))
    return text


def check_dir_label(label: str) -> str:
    """`label` if it can be the label of a `sha1dir://` URI; `InvalidUriError` if not."""
    if "/" in label or _has_control(label):
        raise InvalidUriError(
            f"invalid label {label!r} for a sha1dir:// URI",
            "a label may not contain '/' or control characters",
        )
    return label


def parse_dir_uri(text: object) -> DirUri:
    """Parse and validate a `sha1dir://` URI; raise `InvalidUriError` quoting `text` if bad."""
    if not isinstance(text, str) or not text.startswith(DIR_SCHEME):
        raise InvalidUriError(
            f"invalid URI {text!r}: not a sha1dir:// URI",
            "expected sha1dir://<40 hex digits>[.<label>][/<path>]",
        )
    rest = text[len(DIR_SCHEME) :].partition("?")[0].partition("#")[0]
    head, slash, path_text = rest.partition("/")
    sha1, dot, label_text = head[:40], head[40:41], head[41:]
    if not is_sha1(sha1) or dot not in ("", "."):
        raise InvalidUriError(
            f"invalid URI {text!r}: {head!r} does not start with a SHA-1 hash",
            "the part after sha1dir:// is 40 hexadecimal digits, then optionally .<label>",
        )
    label = unquote(label_text) or None
    if label is not None and (_has_control(label) or "/" in label):
        raise InvalidUriError(
            f"invalid URI {text!r}: bad label {label!r}",
            "a label may not contain '/' or control characters",
        )
    path: Tuple[str, ...] = ()
    if slash and path_text.strip("/"):
        checked = _parse_label(text, path_text.rstrip("/"))
        path = tuple(checked.split("/")) if checked else ()
    return DirUri(sha1.lower(), label, path)


def parse_any_uri(text: object) -> Union[ContentUri, DirUri]:
    """A `sha1://` or a `sha1dir://` URI, parsed; anything else is an `InvalidUriError`."""
    if isinstance(text, str) and text.startswith(DIR_SCHEME):
        return parse_dir_uri(text)
    if isinstance(text, str) and text.startswith(SCHEME):
        return parse_uri(text)
    hint = "expected sha1://<40 hex digits>[/<name>] or sha1dir://<40 hex digits>.<label>[/<path>]"
    if isinstance(text, str) and "://" not in text:
        hint += " (to store a local file or folder, use store-file [-r])"
    raise InvalidUriError(f"invalid URI {text!r}: not a sha1:// or sha1dir:// URI", hint)


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)
