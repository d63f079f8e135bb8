"""Manifests: the chunk list that files over 20,000,000 bytes carry.

A manifest is JSON `{"size", "sha1", "chunks": [{"start", "end", "sha1"}, ...]}`,
serialised compactly and stored as an ordinary object. It lets a range read or a
transfer fetch only the chunks it needs.
"""

from __future__ import annotations

from typing import List, Tuple

from kachery_core.content.uri import check_sha1
from kachery_core.errors import IntegrityError
from kachery_core.records import dataclass

MANIFEST_THRESHOLD = 20_000_000
"""Files strictly larger than this many bytes get a manifest."""

CHUNK_SIZE = 20_000_000
"""Every chunk but the last is exactly this long."""


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    sha1: str


@dataclass(frozen=True)
class Manifest:
    size: int
    sha1: str
    chunks: Tuple[Chunk, ...]

    def to_bytes(self) -> bytes:
        """The compact JSON that is stored, and whose hash goes in `?manifest=`."""
        import json

        doc = {
            "size": self.size,
            "sha1": self.sha1,
            "chunks": [{"start": c.start, "end": c.end, "sha1": c.sha1} for c in self.chunks],
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a stored manifest, refusing one whose chunks do not tile the file."""
        import json

        try:
            doc = json.loads(data)
            chunks = tuple(
                Chunk(int(c["start"]), int(c["end"]), check_sha1(c["sha1"])) for c in doc["chunks"]
            )
            manifest = cls(int(doc["size"]), check_sha1(doc["sha1"]), chunks)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"malformed manifest: {exc}") from None
        position = 0
        for chunk in chunks:
            if chunk.start != position or chunk.end <= chunk.start:
                raise IntegrityError(f"malformed manifest for {manifest.sha1}: chunks do not tile")
            position = chunk.end
        if position != manifest.size:
            raise IntegrityError(f"malformed manifest for {manifest.sha1}: size mismatch")
        return manifest

    def chunks_for_range(self, start: int, end: int) -> List[Chunk]:
        """The chunks that overlap bytes [start, end)."""
        return [c for c in self.chunks if c.end > start and c.start < end]


def chunk_bounds(size: int) -> List[Tuple[int, int]]:
    """The [start, end) of every chunk of a file of `size` bytes."""
    return [(s, min(s + CHUNK_SIZE, size)) for s in range(0, size, CHUNK_SIZE)]
