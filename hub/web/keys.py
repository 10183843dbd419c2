"""Typed application state keys (no module globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hub.web.events import EventStream
    from hub.web.live import LiveFeeds
    from hub.web.metrics import WebMetrics
    from hub.web.view import HubView

VIEW: web.AppKey[HubView] = web.AppKey("view")
FEEDS: web.AppKey[LiveFeeds] = web.AppKey("live_feeds")
EVENTS: web.AppKey[EventStream] = web.AppKey("event_stream")
WEB_METRICS: web.AppKey[WebMetrics] = web.AppKey("web_metrics")
