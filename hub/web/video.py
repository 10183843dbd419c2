"""``snapshot.jpg`` and ``live.mjpeg`` for each camera (annotated, encoded off the loop)."""

from __future__ import annotations

import logging

from aiohttp import web

from hub.web.jsonio import json_error
from hub.web.keys import FEEDS
from hub.web.live import FeedClosed

log = logging.getLogger(__name__)

BOUNDARY = "frame"
_DISCONNECT_POLL_S = 1.0


async def snapshot(request: web.Request) -> web.StreamResponse:
    camera_id = request.match_info["camera_id"]
    feeds = request.app[FEEDS]
    if not feeds.known(camera_id):
        return json_error(404, "camera not found", {"id": camera_id})
    try:
        jpeg = await feeds.get(camera_id).latest()
    except FeedClosed:
        return json_error(503, "shutting down")
    if jpeg is None:
        return json_error(503, "no frame yet", {"id": camera_id})
    return web.Response(body=jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})


def _part(jpeg: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"


async def live(request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace: a part per new frame, at most ``http.mjpeg_fps``."""
    camera_id = request.match_info["camera_id"]
    feeds = request.app[FEEDS]
    if not feeds.known(camera_id):
        return json_error(404, "camera not found", {"id": camera_id})
    try:
        feed = feeds.get(camera_id)
    except FeedClosed:
        return json_error(503, "shutting down")
    resp = web.StreamResponse(headers={
        "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        "Cache-Control": "no-store, no-cache, must-revalidate",
        "Pragma": "no-cache",
        "Connection": "close",
    })
    await resp.prepare(request)
    seen = 0
    try:
        async with feed.watch():
            while True:
                got = await feed.wait_newer(seen, _DISCONNECT_POLL_S)
                if got is None:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break
                    continue
                seen, jpeg = got
                await resp.write(_part(jpeg))
    except FeedClosed:
        log.debug("live view of %s ended: shutdown", camera_id)
    except ConnectionError:
        log.debug("live view of %s: client went away", camera_id)
    return resp
