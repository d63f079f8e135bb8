"""Lazy, verified reads: `kc.open` (a seekable file) and the fsspec filesystem (`fs.py`).

See `file.py` for the file, `pieces.py` for how pieces are found, fetched and checked.
"""

from .file import KacheryFile, LazyFile, open_uri

__all__ = ["KacheryFile", "LazyFile", "open_uri"]
