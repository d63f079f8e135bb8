"""A look inside a stored file for its page: text, JSON, the first rows of a CSV, the
shape and dtype of a `.npy` array, or an image.

Only the first `PREVIEW_BYTES` are read (a whole JSON document up to `JSON_BYTES`). What
a preview holds is data for a template to escape, never markup: HTML and SVG files show as
their text, and an image is one whose first bytes are PNG, JPEG, GIF or WebP (served with
that type by `image_type`, never the type its name suggests).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

PREVIEW_BYTES = 64 << 10
JSON_BYTES = 4 << 20
CSV_ROWS = 20
IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
NPY_MAGIC = b"\x93NUMPY"
TEXT_CONTROLS = "\t\n\r\f"


def image_type(head: bytes) -> Optional[str]:
    """The image type the bytes start with, None when they are no image we show."""
    for magic, kind in IMAGE_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def preview(path: Path, name: str) -> Dict[str, Any]:
    """{"kind": "image" | "npy" | "json" | "csv" | "text" | "binary", ...}."""
    with open(path, "rb") as f:
        head = f.read(PREVIEW_BYTES)
        size = f.seek(0, io.SEEK_END)
    truncated = size > len(head)
    kind = image_type(head)
    if kind is not None:
        return {"kind": "image", "type": kind}
    if head.startswith(NPY_MAGIC):
        return _npy(path)
    lower = name.lower()
    if lower.endswith(".json") and size <= JSON_BYTES:
        found = _json(path)
        if found is not None:
            return found
    text = _text(head, truncated)
    if text is None:
        return {"kind": "binary"}
    if lower.endswith((".csv", ".tsv")):
        return _csv(text, "\t" if lower.endswith(".tsv") else ",", truncated)
    return {"kind": "text", "text": text, "truncated": truncated}


def _text(head: bytes, truncated: bool) -> Optional[str]:
    if b"\x00" in head:
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:  # a cut in the middle of a character is not a reason to call it binary
        text = decoder.decode(head, final=not truncated)
    except UnicodeDecodeError:
        return None
    if any(c < " " and c not in TEXT_CONTROLS for c in text) or "\x7f" in text:
        return None  # control characters: data, not text to read
    return text


def _json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        return None
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    return {
        "kind": "json",
        "text": text[:PREVIEW_BYTES],
        "truncated": len(text) > PREVIEW_BYTES,
    }


def _csv(text: str, delimiter: str, truncated: bool) -> Dict[str, Any]:
    rows: List[List[str]] = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            rows.append(row)
            if len(rows) >= CSV_ROWS:
                break
    except csv.Error:
        return {"kind": "text", "text": text, "truncated": truncated}
    return {"kind": "csv", "rows": rows, "truncated": truncated or len(rows) >= CSV_ROWS}


def _npy(path: Path) -> Dict[str, Any]:
    import numpy.lib.format as npy_format

    try:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = npy_format.read_array_header_2_0(f)
    except (ValueError, OSError) as exc:
        return {"kind": "binary", "problem": f"not a readable .npy header: {exc}"}
    return {
        "kind": "npy",
        "shape": list(shape),
        "dtype": str(dtype),
        "fortranOrder": bool(fortran),
    }
