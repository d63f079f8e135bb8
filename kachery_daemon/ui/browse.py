"""Browsing the store: a `sha1dir://` tree entry by entry, a `sha1://` file's page (size,
hash, manifest chunks, whether it is here, a preview), its download and its image.

Names come from directory objects anyone may have made: they reach the page only as data
for autoescaping templates (and through `render.visible`), and a download's name is sent
only in a `Content-Disposition` that cannot carry a header break.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict, Optional, Union
from urllib.parse import quote

from aiohttp import web

from kachery_core.content.directory import MAX_DIRECTORY_OBJECT_BYTES, Directory, FileEntry
from kachery_core.content.uri import ContentUri, DirUri, parse_any_uri, parse_uri
from kachery_core.errors import KacheryError, NotFoundError

from ..node import Node
from .access import page, refuse
from .previews import PREVIEW_BYTES, image_type, preview
from .render import answer


@page("browse")
async def browse(request: web.Request) -> web.StreamResponse:
    text = request.query.get("uri", "").strip()
    data: Dict[str, Any] = {"uri": text}
    if not text:
        return answer(request, "browse.html", data)
    node: Node = request.app["node"]
    try:
        uri = parse_any_uri(text)
        if isinstance(uri, DirUri):
            found = await _lookup(node, uri)
            if isinstance(found, Directory):
                data["directory"] = _listing(node, uri, found)
                return answer(request, "browse.html", data)
            file_uri = found.uri(uri.path[-1])
            data["uri"] = str(file_uri)
            data["inDirectory"] = str(uri)
            data["file"] = await _file_page(node, file_uri, found.size)
        else:
            data["file"] = await _file_page(node, uri, None)
    except KacheryError as exc:
        data["error"] = str(exc)
        return answer(request, "browse.html", data, 404 if isinstance(exc, NotFoundError) else 400)
    return answer(request, "file.html", data)


async def _lookup(node: Node, uri: DirUri) -> Union[Directory, FileEntry]:
    path = await node.find(ContentUri(uri.sha1))
    if path.stat().st_size > MAX_DIRECTORY_OBJECT_BYTES:
        raise KacheryError(f"{uri.root()} is too large to be a directory object")
    data = await _run(path.read_bytes)
    return Directory.from_bytes(data, str(uri.root())).lookup(uri.path, str(uri.root()))


def _listing(node: Node, uri: DirUri, directory: Directory) -> Dict[str, Any]:
    dirs = []
    for name in sorted(directory.dirs):
        count, size = directory.dirs[name].totals()
        dirs.append({"name": name, "uri": str(uri.join(name)), "files": count, "size": size})
    files = []
    for name in sorted(directory.files):
        entry = directory.files[name]
        file_uri = str(entry.uri(name)) if entry.sha1 else None
        here = entry.sha1 is not None and node.storage.has(entry.sha1)
        files.append({"name": name, "size": entry.size, "uri": file_uri, "present": bool(here)})
    parent = str(DirUri(uri.sha1, uri.label, uri.path[:-1])) if uri.path else None
    return {"path": list(uri.path), "parent": parent, "dirs": dirs, "files": files}


async def _file_page(node: Node, uri: ContentUri, size: Optional[int]) -> Dict[str, Any]:
    info: Dict[str, Any] = {"sha1": uri.sha1, "name": uri.label, "size": size}
    info["manifestSha1"] = uri.manifest_sha1
    info["chunks"] = await _run(_chunks, node, uri.manifest_sha1)
    try:
        path = await node.find(uri)
    except NotFoundError:
        info["present"] = False
        return info
    info["present"] = True
    info["size"] = path.stat().st_size
    info["preview"] = await _run(preview, path, uri.label or "")
    return info


def _chunks(node: Node, manifest_sha1: Optional[str]) -> Optional[list]:
    if manifest_sha1 is None or not node.storage.has(manifest_sha1):
        return None
    manifest = node.storage.load_manifest(manifest_sha1)
    return [
        {"start": c.start, "end": c.end, "sha1": c.sha1, "present": node.storage.has(c.sha1)}
        for c in manifest.chunks
    ]


async def _stored_file(request: web.Request) -> Union[Path, web.StreamResponse]:
    node: Node = request.app["node"]
    try:
        uri = parse_uri(request.query.get("uri", ""))
        return await node.find(uri)
    except KacheryError as exc:
        return refuse(request, 404 if isinstance(exc, NotFoundError) else 400, str(exc))


@page("browse")
async def download(request: web.Request) -> web.StreamResponse:
    """The file's bytes as an attachment (never shown inline, whatever they are)."""
    path = await _stored_file(request)
    if not isinstance(path, Path):
        return path
    name = parse_uri(request.query["uri"]).label or parse_uri(request.query["uri"]).sha1
    name = name.rsplit("/", 1)[-1]
    ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200]
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    headers = {"Content-Type": "application/octet-stream", "Content-Disposition": disposition}
    node: Node = request.app["node"]
    node.activity.add("load", request.query["uri"], path.stat().st_size, "web download")
    return web.FileResponse(path, headers=headers)


@page("browse")
async def image(request: web.Request) -> web.StreamResponse:
    """An image preview: only PNG, JPEG, GIF and WebP, by their first bytes."""
    path = await _stored_file(request)
    if not isinstance(path, Path):
        return path
    with open(path, "rb") as f:
        kind = image_type(f.read(PREVIEW_BYTES))
    if kind is None:
        return refuse(request, 415, "this file is not a PNG, JPEG, GIF or WebP image")
    return web.FileResponse(path, headers={"Content-Type": kind})


async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
