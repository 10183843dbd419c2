"""Static files: the dashboard (``/``, ``/static/``) and evidence snapshots (``/evidence/<name>.jpg``)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web

from hub.web.jsonio import json_error
from hub.web.keys import VIEW

STATIC_DIR = Path(__file__).with_name("static")
_EVIDENCE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}\.jpg$")


async def dashboard(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def _inside(directory: Path, name: str) -> Path | None:
    """The file ``name`` in ``directory`` if it exists and (after symlinks) stays inside it."""
    root = directory.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


async def evidence(request: web.Request) -> web.StreamResponse:
    """Serve ``<evidence_dir>/<name>.jpg``; anything that could leave the directory is refused."""
    name = request.match_info["name"]
    if not _EVIDENCE_NAME.match(name) or ".." in name:
        return json_error(404, "evidence not found", {"name": name})
    path = await asyncio.to_thread(_inside, request.app[VIEW].evidence_dir, name)
    if path is None:
        return json_error(404, "evidence not found", {"name": name})
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=86400",
                                           "Content-Type": "image/jpeg"})
