"""``create_app(view)``: the aiohttp application (API v1, WebSocket, MJPEG, metrics, dashboard)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.web import api, dispatch_api, files, openapi, report_api, silences_api, video
from hub.web.events import EventStream
from hub.web.jsonio import json_error
from hub.web.keys import EVENTS, FEEDS, VIEW, WEB_METRICS
from hub.web.live import LiveFeeds
from hub.web.metrics import WebMetrics, metrics
from hub.web.view import HubView

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error": ..., "detail": ...}``; unexpected ones are logged."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason, {"path": request.path})
    except (ConnectionError, TimeoutError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal error", {"path": request.path})


async def _startup(app: web.Application) -> None:
    app[EVENTS].start()


async def _shutdown(app: web.Application) -> None:
    """Runs before aiohttp waits for handlers: end live streams and sockets so they return."""
    await app[FEEDS].close()
    await app[EVENTS].close()


def create_app(view: HubView) -> web.Application:
    """Build the web app around a running hub's :class:`HubView` (no globals; one app per view)."""
    app = web.Application(middlewares=[json_errors])
    web_metrics = WebMetrics()
    app[VIEW] = view
    app[WEB_METRICS] = web_metrics
    app[FEEDS] = LiveFeeds(view, on_encode=web_metrics.encoded())
    app[EVENTS] = EventStream(view)

    app.add_routes(api.routes)
    app.add_routes(dispatch_api.routes)
    app.add_routes(report_api.routes)
    app.add_routes(silences_api.routes)
    app.router.add_get("/api/cameras/{camera_id}/snapshot.jpg", video.snapshot)
    app.router.add_get("/api/cameras/{camera_id}/live.mjpeg", video.live)
    app.router.add_get("/api/openapi.json", openapi.openapi)
    app.router.add_get("/ws/events", app[EVENTS].handle)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/evidence/{name}", files.evidence)
    app.router.add_get("/", files.dashboard)
    app.router.add_static("/static/", files.STATIC_DIR, name="static", append_version=False)

    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    return app
